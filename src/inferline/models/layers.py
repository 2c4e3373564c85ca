"""Shared building blocks: activations, attention over torch SDPA, and the post-norm encoder block.

Modules are named like the checkpoints that use them most (BERT's `attention.self.query`, ...), so
most families load with no renames; others map their names onto these in their WeightMap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_python": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}


def activation(name: str):
    """The activation function transformers means by `name` (hidden_act and friends)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"Unsupported activation {name!r}; supported: {sorted(ACTIVATIONS)}.") from None


def padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) 1/0 mask → (B, 1, 1, T) additive mask for SDPA, or None when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    mask = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
    mask.masked_fill_(attention_mask == 0, torch.finfo(dtype).min)
    return mask[:, None, None, :]


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, H*D) → (B, H, T, D)"""
    B, T, _ = x.shape
    return x.view(B, T, num_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) → (B, T, H*D)"""
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              scale: float | None = None, is_causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention; q (B, H, Tq, D), k/v (Bkv, Hkv, Tk, D) with Hkv dividing H (GQA).

    GQA goes to SDPA as is (`enable_gqa`): the same result as repeating k/v per query head, without
    materialising the copies (on CPU 10-20x faster for a decode step's attention). Likewise Bkv may divide B:
    each k/v row then serves B/Bkv consecutive query rows (the beams of one input over its encoder output),
    folded into the query length so k/v are read once; the mask is then per k/v row, (Bkv, 1, 1, Tk).
    """
    gqa = k.shape[1] != q.shape[1]
    if k.shape[0] == q.shape[0]:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, is_causal=is_causal,
                                              enable_gqa=gqa)
    if is_causal:
        raise ValueError("attention: k/v rows shared by several query rows is for cross-attention, not causal.")
    B, H, T, D = q.shape
    Bkv, G = k.shape[0], B // k.shape[0]
    q = q.view(Bkv, G, H, T, D).transpose(1, 2).reshape(Bkv, H, G * T, D)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)  # (Bkv, H, G*T, D)
    return out.view(Bkv, H, G, T, D).transpose(1, 2).reshape(B, H, T, D)


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention with separate q/k/v projections (BERT's `attention.self`)."""

    def __init__(self, hidden_size: int, num_heads: int, bias: bool = True):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}.")
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.num_heads) for proj in (self.query, self.key, self.value))
        return merge_heads(attention(q, k, v, mask))  # (B, T, C)


class DenseResidualNorm(nn.Module):
    """dense → add residual → LayerNorm: the post-norm output of BERT's attention and feed-forward."""

    def __init__(self, in_size: int, hidden_size: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(in_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class DenseActivation(nn.Module):
    """dense → activation (BERT's `intermediate`)."""

    def __init__(self, in_size: int, out_size: int, act: str):
        super().__init__()
        self.dense = nn.Linear(in_size, out_size)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class PostNormAttention(nn.Module):
    """self-attention → dense → add residual → LayerNorm; `self_attention` replaces BERT's (DeBERTa's
    disentangled one), and any extra forward arguments are passed on to it."""

    def __init__(self, hidden_size: int, num_heads: int, eps: float, self_attention: nn.Module | None = None):
        super().__init__()
        self.self = self_attention if self_attention is not None else SelfAttention(hidden_size, num_heads)
        self.output = DenseResidualNorm(hidden_size, hidden_size, eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *extra) -> torch.Tensor:
        return self.output(self.self(x, mask, *extra), x)


class PostNormEncoderLayer(nn.Module):
    """The BERT block: attention and feed-forward, each followed by residual + LayerNorm."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, act: str, eps: float,
                 self_attention: nn.Module | None = None):
        super().__init__()
        self.attention = PostNormAttention(hidden_size, num_heads, eps, self_attention)
        self.intermediate = DenseActivation(hidden_size, intermediate_size, act)
        self.output = DenseResidualNorm(intermediate_size, hidden_size, eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *extra) -> torch.Tensor:
        x = self.attention(x, mask, *extra)
        return self.output(self.intermediate(x), x)


class PostNormEncoder(nn.Module):
    def __init__(self, num_layers: int, hidden_size: int, num_heads: int, intermediate_size: int, act: str,
                 eps: float):
        super().__init__()
        self.layer = nn.ModuleList(
            PostNormEncoderLayer(hidden_size, num_heads, intermediate_size, act, eps) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim) fixed sin/cos table (DistilBERT's sinusoidal_pos_embds, ...)."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


# ----- decoder blocks: norms, rotary positions, the KV cache, causal masks -----


class RMSNorm(nn.Module):
    """Root-mean-square norm (Llama, T5): x / rms(x) * weight, computed in float32.

    The normalised value goes back to the input's dtype (Llama), or with `to_weight_dtype` to the weight's
    (T5: its residual stream turns float32 after the float32 `wo`, while its norms stay half precision).
    """

    def __init__(self, size: int, eps: float = 1e-6, to_weight_dtype: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps
        self.to_weight_dtype = to_weight_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.weight.dtype if self.to_weight_dtype else x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


# oneDNN's matmul on dense weights (the kernel torch.compile emits for CPU linears); None where torch lacks it.
_ONEDNN_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


class Linear(nn.Linear):
    """nn.Linear (same parameters, same maths), computed by oneDNN for float32 on the CPU.

    torch's CPU linear calls MKL's sgemm, which runs the few rows of a decode step far below memory bandwidth;
    oneDNN's matmul is 1.5-3x faster there (most on the vocabulary projection) and ~20% faster on long inputs
    (torch 2.13, 2 threads). One row onto a vocabulary-sized output is faster still as MKL's weight @ x.T
    (two columns: one would take the slow gemv path). Results can differ from nn.Linear's in the last bits
    (summation order). Other devices and dtypes, and autograd, get nn.Linear's own path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _ONEDNN_LINEAR is None or x.device.type != "cpu" or x.dtype != torch.float32 \
                or self.weight.dtype != torch.float32 or (torch.is_grad_enabled() and self.weight.requires_grad):
            return F.linear(x, self.weight, self.bias)
        if x.numel() == x.shape[-1] and self.out_features >= 16384:  # one row, a vocabulary: (V, C) @ (C, 2)
            row = x.reshape(1, -1)
            cols = torch.cat((row, row)).t()
            out = torch.mm(self.weight, cols) if self.bias is None else torch.addmm(self.bias[:, None], self.weight,
                                                                                   cols)
            return out[:, 0].contiguous().view(*x.shape[:-1], self.out_features)
        return _ONEDNN_LINEAR(x, self.weight, self.bias, "none", [], "")


class KVCache:
    """Preallocated keys and values for every layer, written in place at positions (never grown).

    One object per generation call, passed into `forward`: modules hold no state between calls, so one
    model serves concurrent requests. `length` counts the positions already written; the model calls
    `advance(T)` once all layers have stored a step. Encoder-decoders keep cross-attention keys/values,
    computed once from the encoder output, in `cross`.
    """

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, max_length: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (num_layers, batch_size, num_kv_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self.length = 0
        self.max_length = max_length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v (B, Hkv, T, D) after the cached positions; return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache holds {self.max_length} positions; {end} were needed.")
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Select batch rows (beam search): row i becomes old row index[i]; only written positions move.

        `cross=False` leaves the cross-attention keys/values as they are: right when rows only move among
        rows that share an encoder output (a beam search's beams of one input), and far cheaper.
        """
        for cache in (self.keys, self.values):
            for layer in cache:  # per layer: index_select over the leading dim is 2x faster than over dim 1
                filled = layer[:, :, :self.length]
                filled.copy_(filled.index_select(0, index))
        if cross:
            self.cross = [None if c is None else (c[0].index_select(0, index), c[1].index_select(0, index))
                          for c in self.cross]


def key_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) 1/0 mask → (B, 1, 1, S) additive mask; unlike `padding_mask` never None, so no host sync
    (for per-token paths such as cross-attention over a padded encoder output)."""
    mask = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill_(attention_mask == 0, torch.finfo(dtype).min)[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """q/k/v/out projections over `attention`: encoder self-, decoder self- and cross-attention.

    Named like BART's (`q_proj`, `k_proj`, `v_proj`, `out_proj`); other families rename onto these. With a
    cache, self-attention stores this step's keys/values at `layer` and attends to all written so far;
    cross-attention (`source` given) projects the encoder output once per cache and reuses it after.
    """

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int | None = None, bias: bool = True,
                 scale: float | None = None, key_bias: bool | None = None):
        super().__init__()
        head_dim = head_dim or hidden_size // num_heads
        inner = num_heads * head_dim
        self.num_heads, self.head_dim, self.scale = num_heads, head_dim, scale
        self.q_proj = Linear(hidden_size, inner, bias=bias)
        self.k_proj = Linear(hidden_size, inner, bias=bias if key_bias is None else key_bias)
        self.v_proj = Linear(hidden_size, inner, bias=bias)
        self.out_proj = Linear(inner, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, source: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.num_heads)  # (B, H, T, D)
        if source is None:
            k, v = split_heads(self.k_proj(x), self.num_heads), split_heads(self.v_proj(x), self.num_heads)
            if cache is not None:
                k, v = cache.update(layer, k, v)  # (B, H, S, D): cached + new
        elif cache is not None and cache.cross[layer] is not None:
            k, v = cache.cross[layer]
        else:
            k, v = split_heads(self.k_proj(source), self.num_heads), split_heads(self.v_proj(source), self.num_heads)
            if cache is not None:  # stored contiguous: every later step reads them (SDPA ~30% faster)
                k, v = k.contiguous(), v.contiguous()
                cache.cross[layer] = (k, v)
        return self.out_proj(merge_heads(attention(q, k, v, mask, self.scale)))  # (B, T, C)


def causal_mask(attention_mask: torch.Tensor, query_length: int, dtype: torch.dtype,
                sliding_window: int | None = None) -> torch.Tensor:
    """(B, S) 1/0 mask over every position so far → (B, 1, T, S) additive mask for the last T queries.

    Query i (absolute position S - T + i) sees key j when j <= its position, key j is not padding and,
    with a sliding window, the distance is below the window. finfo.min rather than -inf keeps rows that
    see nothing (left padding) finite instead of NaN.
    """
    if query_length == 1 and sliding_window is None:  # a decode step: the last query sees every real key
        return key_padding_mask(attention_mask, dtype)
    B, S = attention_mask.shape
    device = attention_mask.device
    query_pos = torch.arange(S - query_length, S, device=device)[:, None]  # (T, 1)
    key_pos = torch.arange(S, device=device)[None, :]  # (1, S)
    allowed = key_pos <= query_pos
    if sliding_window is not None:
        allowed = allowed & (query_pos - key_pos < sliding_window)
    allowed = allowed[None, None] & attention_mask[:, None, None, :].bool()  # (B, 1, T, S)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def positions_from_mask(attention_mask: torch.Tensor, query_length: int) -> torch.Tensor:
    """(B, S) mask → (B, T) position ids of the last T tokens, counting only real tokens (left padding)."""
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.clamp_(min=0)
    return positions[:, -query_length:]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half layout) with transformers' rope_scaling types.

    `rotary_dim` may be below head_dim (partial rotary). Frequencies are computed on the fly from
    positions, so there is no buffer to load and nothing to mis-place on the meta device.
    """

    def __init__(self, rotary_dim: int, base: float = 10000.0, scaling: dict | None = None,
                 max_position_embeddings: int = 2048):
        super().__init__()
        self.rotary_dim = rotary_dim
        self.base = base
        self.scaling = dict(scaling or {})
        self.max_position_embeddings = max_position_embeddings
        self.original_max = self.scaling.get("original_max_position_embeddings", max_position_embeddings)
        kind = self.scaling.get("rope_type", self.scaling.get("type", "default"))
        self.kind = kind
        if kind not in ("default", "linear", "llama3", "dynamic", "yarn", "longrope"):
            raise ValueError(f"Unsupported rope_scaling type {kind!r}; supported: default, linear, llama3, "
                             f"dynamic, yarn, longrope.")

    def inv_freq(self, seq_len: int, device) -> tuple[torch.Tensor, float]:
        """(rotary_dim/2,) inverse frequencies and the attention scaling factor for this length."""
        dim, base, kind, s = self.rotary_dim, self.base, self.kind, self.scaling
        exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
        if kind == "dynamic" and seq_len > self.max_position_embeddings:
            factor = s["factor"]
            base = base * ((factor * seq_len / self.max_position_embeddings) - (factor - 1)) ** (dim / (dim - 2))
        inv = 1.0 / (base ** exponents)
        scale = 1.0
        if kind == "linear":
            inv = inv / s["factor"]
        elif kind == "llama3":
            inv = _llama3_scale(inv, s)
        elif kind == "yarn":
            inv, scale = _yarn(inv, dim, base, s, self.original_max, device)
        elif kind == "longrope":
            factors = s["long_factor"] if seq_len > self.original_max else s["short_factor"]
            inv = inv / torch.tensor(factors, dtype=torch.float32, device=device)
            factor = s.get("factor", self.max_position_embeddings / self.original_max)
            scale = s.get("attention_factor") or (
                1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(self.original_max)))
        return inv, scale

    def forward(self, positions: torch.Tensor, dtype: torch.dtype, seq_len: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) positions → cos, sin of shape (B, 1, T, rotary_dim)."""
        seq_len = seq_len if seq_len is not None else int(positions.max()) + 1
        inv, scale = self.inv_freq(seq_len, positions.device)
        angles = positions[..., None].float() * inv  # (B, T, rotary_dim/2)
        emb = torch.cat((angles, angles), dim=-1)
        return (emb.cos() * scale).to(dtype)[:, None], (emb.sin() * scale).to(dtype)[:, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first rotary_dim channels of x (B, H, T, D); the rest pass through (partial rotary)."""
    d = cos.shape[-1]
    if d == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    rotated, rest = x[..., :d], x[..., d:]
    return torch.cat((rotated * cos + rotate_half(rotated) * sin, rest), dim=-1)


def _llama3_scale(inv: torch.Tensor, s: dict) -> torch.Tensor:
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old = s["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn(inv: torch.Tensor, dim: int, base: float, s: dict, original_max: int, device) -> tuple[torch.Tensor, float]:
    factor = s["factor"]
    beta_fast, beta_slow = s.get("beta_fast", 32), s.get("beta_slow", 1)
    mscale = s.get("attention_factor") or (0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0)

    def correction_dim(rotations):
        return (dim * math.log(original_max / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device=device) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp
    return inv / factor * (1 - extrapolation) + inv * extrapolation, mscale
