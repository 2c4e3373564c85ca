"""Shared building blocks, each once: activations, the attention module over torch SDPA, the plain and gated
MLPs, norms, the KV cache's constructor (the cache itself: cache.py), the decoder-only prologue and the
encoder-decoder decode step. The post-norm (BERT) encoder block built from them: post_norm.py.

Families differ by constructor arguments, sub-module names included (`names=("query", "key", "value", None)`
for BERT, `("c_attn", "c_proj")` fused for GPT-2), so module trees mirror their checkpoints and most
families load with no renames.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .cache import KVCache
from .kernels import FastLinear, fused_linears
from .rotary import apply_rotary


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


# the activations our kernels compute in a product's epilogue, by their name there (F.gelu's `approximate`, ReLU)
EPILOGUES = {F.gelu: "none", _gelu_tanh: "tanh", F.relu: "relu"}


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


# On the CPU, attention whose scores (heads x queries x keys) per batch row stay at or under this many (2 MiB of
# float32) is two batched matmuls around a softmax, over as many rows at a time as fit under it: faster than
# SDPA's flash kernel, which tiles for long sequences (measured, 2 threads, 12 heads: one row of 75 tokens,
# head size 32: 94 vs 157 us; 32 padded rows of 75 tokens: 3.5 vs 6.7 ms; of 120: 7.6 vs 11.2 ms; 8 rows of 300
# tokens, head size 64: 15.9 vs 18.1 ms). One row of 384 or more tokens is over it, and there SDPA is faster.
SMALL_SCORES = 1 << 19


def _matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                      scale: float | None) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v, SMALL_SCORES scores at a time (whole batch rows), so the scores stay
    in cache. The scale rides on the first product (baddbmm's alpha), whose output is a fresh contiguous
    tensor: scaling a matmul's strided output in place was 3x slower at 150 tokens."""
    B, H, T, D = q.shape
    S, Dv = k.shape[2], v.shape[-1]
    scale = D ** -0.5 if scale is None else scale
    rows = max(1, SMALL_SCORES // (H * T * S))
    out = q.new_empty(B, H, T, Dv)
    for start in range(0, B, rows):
        end = min(start + rows, B)
        n = (end - start) * H
        q3, k3 = q[start:end].reshape(n, T, D), k[start:end].reshape(n, S, D)
        scores = torch.baddbmm(q3.new_empty(n, T, S), q3, k3.transpose(1, 2), beta=0, alpha=scale)
        if mask is not None:
            scores.view(end - start, H, T, S).add_(mask if mask.shape[0] == 1 else mask[start:end])
        torch.bmm(scores.softmax(-1), v[start:end].reshape(n, S, Dv), out=out[start:end].view(n, T, Dv))
    return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              scale: float | None = None, is_causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention; q (B, H, Tq, D), k/v (Bkv, Hkv, Tk, D) with Hkv dividing H (GQA).

    GQA goes to SDPA as is (`enable_gqa`): the same result as repeating k/v per query head, without
    materialising the copies (much cheaper for a decode step). Likewise Bkv may divide B:
    each k/v row then serves B/Bkv consecutive query rows (the beams of one input over its encoder output),
    folded into the query length so k/v are read once; the mask is then per k/v row, (Bkv, 1, 1, Tk).
    """
    gqa = k.shape[1] != q.shape[1]
    if k.shape[0] == q.shape[0]:
        if not gqa and not is_causal and q.dtype == torch.float32 and q.is_cpu \
                and q.shape[1] * q.shape[2] * k.shape[2] <= SMALL_SCORES \
                and not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)):
            return _matmul_attention(q, k, v, mask, scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, is_causal=is_causal,
                                              enable_gqa=gqa)
    if is_causal:
        raise ValueError("attention: k/v rows shared by several query rows is for cross-attention, not causal.")
    B, H, T, D = q.shape
    Bkv, G = k.shape[0], B // k.shape[0]
    q = q.view(Bkv, G, H, T, D).transpose(1, 2).reshape(Bkv, H, G * T, D)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)  # (Bkv, H, G*T, D)
    return out.view(Bkv, H, G, T, D).transpose(1, 2).reshape(B, H, T, D)


class Attention(nn.Module):
    """Multi-head attention over `attention`: the one attention module of every family.

    Self- or cross-attention (`source`: the encoder output), separate or fused q/k/v projections, GQA
    (`num_kv_heads`), bias on q/k/v and output apart, an optional rotary hook (`rope` in forward) and
    per-head q/k RMSNorm, and the KV cache: decoder self-attention (`causal`) stores this step's keys/values
    at `layer_idx` and attends to all written so far; cross-attention projects the encoder output once per
    cache and reuses it after.

    names: the checkpoint's module names, (q, k, v, out) or with `fused` (qkv, out); out None means no output
      projection (BERT's lives beside the residual in `attention.output`).
    causal: decoder self-attention: with no mask, several queries attend causally (SDPA's own mask).
    upcast: compute attention in float32 (GPT-2's reorder_and_upcast_attn).
    linear: the projections' class (FastLinear, or nn.Linear where oneDNN's kernel does not pay).
    key_bias: the k projection's bias where it differs from the others' (Whisper's k_proj has none).
    source_size: the width of the cross-attention source where it differs from hidden_size (BLIP's text
      decoder over the image tower's output).
    fused_kv: cross-attention with k/v fused into one projection, names (q, kv, out) (GPT-2's q_attn, c_attn).
    """

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int | None = None,
                 head_dim: int | None = None, *, bias: bool = True, out_bias: bool | None = None,
                 names: tuple[str | None, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"), fused: bool = False,
                 scale: float | None = None, causal: bool = False, upcast: bool = False,
                 qk_norm_eps: float | None = None, layer_idx: int = 0, linear: type[nn.Linear] = FastLinear,
                 key_bias: bool | None = None, source_size: int | None = None, fused_kv: bool = False):
        super().__init__()
        if head_dim is None:
            if hidden_size % num_heads:
                raise ValueError(f"hidden size {hidden_size} is not a multiple of the number of attention heads "
                                 f"{num_heads}.")
            head_dim = hidden_size // num_heads
        H, Hkv, D = num_heads, num_kv_heads or num_heads, head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = H, Hkv, D
        self.scale, self.causal, self.upcast, self.layer_idx, self.fused = scale, causal, upcast, layer_idx, fused
        self.split_sizes = [H * D, Hkv * D, Hkv * D]
        self.names, self.fused_kv = names, fused_kv
        source_size = source_size or hidden_size
        if fused:
            self.add_module(names[0], linear(hidden_size, sum(self.split_sizes), bias=bias))
        elif fused_kv:
            self.add_module(names[0], linear(hidden_size, H * D, bias=bias))
            self.add_module(names[1], linear(source_size, 2 * Hkv * D, bias=bias))
        else:
            biases = (bias, bias if key_bias is None else key_bias, bias)  # Whisper's k_proj has none
            widths = (hidden_size, source_size, source_size)
            for name, size, b, width in zip(names[:3], self.split_sizes, biases, widths):
                self.add_module(name, linear(width, size, bias=b))
        # separate q/k/v FastLinears: self-attention runs them as one product (`fused_linears`)
        self.fusable = not fused and not fused_kv and issubclass(linear, FastLinear)
        self.out_name = names[-1]
        if self.out_name is not None:
            self.add_module(self.out_name, linear(H * D, hidden_size, bias=bias if out_bias is None else out_bias))
        self.q_norm = RMSNorm(D, qk_norm_eps) if qk_norm_eps is not None else None  # Qwen3, before rotary
        self.k_norm = RMSNorm(D, qk_norm_eps) if qk_norm_eps is not None else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None,
                source: torch.Tensor | None = None, rope: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        H, Hkv, proj, names = self.num_heads, self.num_kv_heads, self._modules, self.names
        if self.fused:
            q, k, v = proj[names[0]](x).split(self.split_sizes, dim=-1)
            q, k, v = split_heads(q, H), split_heads(k, Hkv), split_heads(v, Hkv)  # (B, H, T, D)
        else:
            qkv = fused_linears(x, (proj[names[0]], proj[names[1]], proj[names[2]])) \
                if source is None and self.fusable else None
            if qkv is not None:  # one product over the three weights
                q, k, v = split_heads(qkv[0], H), split_heads(qkv[1], Hkv), split_heads(qkv[2], Hkv)
            else:
                q = split_heads(proj[names[0]](x), H)  # (B, H, T, D)
            if source is None and qkv is None:
                if self.fused_kv:
                    raise ValueError("Attention with fused_kv is cross-attention: pass `source`.")
                k, v = split_heads(proj[names[1]](x), Hkv), split_heads(proj[names[2]](x), Hkv)
        if source is None:
            if self.q_norm is not None:  # RMSNorm over each head's channels
                q, k = self.q_norm(q), self.k_norm(k)
            if rope is not None:
                q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
            if cache is not None:
                k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, S, D): cached + new
        elif cache is not None and cache.cross[self.layer_idx] is not None:
            k, v = cache.cross[self.layer_idx]
        else:
            if self.fused_kv:
                k, v = proj[names[1]](source).split(self.split_sizes[1:], dim=-1)
            else:
                k, v = proj[names[1]](source), proj[names[2]](source)
            k, v = split_heads(k, Hkv), split_heads(v, Hkv)  # (B, Hkv, S, D)
            if cache is not None:  # stored contiguous: every later step reads them, and SDPA prefers that
                k, v = k.contiguous(), v.contiguous()
                cache.cross[self.layer_idx] = (k, v)
        if source is not None and cache is not None and cache.probe is not None:  # e.g. Whisper's word timing
            cache.probe(self.layer_idx, q, k, mask, self.scale)
        is_causal = self.causal and mask is None and q.shape[2] > 1
        if self.upcast:
            mask = None if mask is None else mask.float()
            out = attention(q.float(), k.float(), v.float(), mask, self.scale, is_causal).to(x.dtype)
        else:
            out = attention(q, k, v, mask, self.scale, is_causal)
        out = merge_heads(out)  # (B, T, H*D)
        return out if self.out_name is None else proj[self.out_name](out)  # (B, T, C)


class MLP(nn.Module):
    """up → activation → down: GPT-2's c_fc/c_proj, BART's fc1/fc2, T5's wi/wo.

    names: (up, down) as in the checkpoint; down None stops after the activation (BERT's `intermediate`,
    whose down projection sits beside the residual in `output`).
    """

    def __init__(self, hidden_size: int, inner_size: int, act: str, bias: bool = True,
                 names: tuple[str, str | None] = ("fc1", "fc2"), linear: type[nn.Linear] = FastLinear):
        super().__init__()
        self.up_name, self.down_name = names
        self.add_module(self.up_name, linear(hidden_size, inner_size, bias=bias))
        if self.down_name is not None:
            self.add_module(self.down_name, linear(inner_size, hidden_size, bias=bias))
        self.act = activation(act)
        # GELU on a FastLinear rides on oneDNN's product (its epilogue) where the product goes there
        gelu = EPILOGUES.get(self.act)
        self.gelu = gelu if gelu != "relu" and issubclass(linear, FastLinear) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self._modules[self.up_name]
        h = up(x, self.gelu) if self.gelu is not None else self.act(up(x))
        if self.down_name is None:
            return h
        down = self._modules[self.down_name]
        return down(h.to(down.weight.dtype))  # T5 keeps its down projection float32 under float16


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): Llama's SwiGLU, T5 v1.1's gated GELU (wi_0, wi_1, wo).

    names: (gate, up, down) as in the checkpoint, or with `fused` (gate_up, down): Phi-3's gate_up_proj.
    """

    def __init__(self, hidden_size: int, inner_size: int, act: str, bias: bool = False, fused: bool = False,
                 names: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj"),
                 linear: type[nn.Linear] = FastLinear):
        super().__init__()
        self.fused, self.names = fused, names
        if fused:
            self.add_module(names[0], linear(hidden_size, 2 * inner_size, bias=bias))
        else:
            self.add_module(names[0], linear(hidden_size, inner_size, bias=bias))
            self.add_module(names[1], linear(hidden_size, inner_size, bias=bias))
        self.add_module(names[-1], linear(inner_size, hidden_size, bias=bias))
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj, names = self._modules, self.names
        if self.fused:
            gate, up = proj[names[0]](x).chunk(2, dim=-1)
        else:
            gate, up = proj[names[0]](x), proj[names[1]](x)
        down = proj[names[-1]]
        return down((self.act(gate) * up).to(down.weight.dtype))  # T5 keeps its down projection float32 under float16


# ----- decoder blocks: norms, the KV cache, causal masks (rotary positions: rotary.py) -----


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
        if x.dtype == self.weight.dtype == torch.float32:  # torch's op: the same operations, in one call
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        dtype = self.weight.dtype if self.to_weight_dtype else x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def key_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) 1/0 mask → (B, 1, 1, S) additive mask; unlike `padding_mask` never None, so no host sync
    (for per-token paths such as cross-attention over a padded encoder output)."""
    mask = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill_(attention_mask == 0, torch.finfo(dtype).min)[:, None, None, :]


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


def new_cache(model: nn.Module, batch_size: int, max_length: int) -> KVCache:
    """The KVCache of a decoder: one layer per decoder self-attention (`Attention(causal=True)`) in `model`,
    with its kv heads, head size, dtype and device. Generative models take this as their `new_cache`."""
    layers = [m for m in model.modules() if isinstance(m, Attention) and m.causal]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no decoder self-attention to cache.")
    first = layers[0]
    weight = next(first.parameters())
    return KVCache(len(layers), batch_size, first.num_kv_heads, max_length, first.head_dim, weight.dtype,
                   weight.device)


class DecoderStep(NamedTuple):
    positions: torch.Tensor  # (B, T) position ids of the new tokens
    masks: dict  # sliding window (None: none) → (B, 1, T, S) additive mask, or None: SDPA's own causal mask
    length: int  # S: cached + new positions


def decoder_step(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cache: KVCache | None,
                 position_ids: torch.Tensor | None, dtype: torch.dtype, windows=(None,)) -> DecoderStep:
    """The prologue of a decoder-only forward: the mask over cached + new positions (all real when none is
    given), positions counted from it (left padding), and the causal mask for each sliding window."""
    B, T = input_ids.shape
    past = cache.length if cache is not None else 0
    plain = attention_mask is None and past == 0  # no padding, nothing cached: SDPA's own causal mask
    if attention_mask is None:
        attention_mask = torch.ones(B, past + T, dtype=torch.long, device=input_ids.device)
    S = attention_mask.shape[1]
    if S != past + T:
        raise ValueError(f"attention_mask covers {S} positions; the cache holds {past} and input_ids adds {T}.")
    if position_ids is None:
        position_ids = positions_from_mask(attention_mask, T)
    masks = {w: None if plain and (w is None or w >= S) else causal_mask(attention_mask, T, dtype, w)
             for w in set(windows)}
    return DecoderStep(position_ids, masks, S)


def decoder_layers(layers: nn.ModuleList, x: torch.Tensor, step: DecoderStep, cache: KVCache | None,
                   windows, *extra) -> torch.Tensor:
    """Run decoder-only layers `layer(x, mask, cache, *extra)`, each with its window's mask, then advance the
    cache past the new tokens."""
    for layer, window in zip(layers, windows):
        x = layer(x, step.masks[window], cache, *extra)
    if cache is not None:
        cache.advance(x.shape[1])
    return x


def decode_stack(stack: nn.Module, x: torch.Tensor, encoder_hidden: torch.Tensor,
                 encoder_attention_mask: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
    """An encoder-decoder's decode step over embedded decoder tokens x (B, T, C): the causal mask over cached +
    new tokens (none for one new token), the key-padding mask over the encoder output, then
    `stack(x, mask, encoder_hidden, cross_mask, cache)` and the cache advanced past the new tokens."""
    B, T, _ = x.shape
    S = T + (cache.length if cache is not None else 0)
    self_mask = None if T == 1 else causal_mask(torch.ones(B, S, dtype=torch.long, device=x.device), T, x.dtype)
    cross_mask = None if encoder_attention_mask is None else key_padding_mask(encoder_attention_mask, x.dtype)
    x = stack(x, self_mask, encoder_hidden, cross_mask, cache)
    if cache is not None:
        cache.advance(T)
    return x


def clamp_fp16_overflow(x: torch.Tensor, nan_too: bool = False) -> torch.Tensor:
    """float16 only: once any value overflowed to ±inf (with `nan_too`, or is NaN), clamp every value into
    ±(max - 1000), as transformers does after T5's sub-layers (inf) and BART's encoder layers (inf or NaN).
    No host sync: the condition stays a tensor."""
    if x.dtype != torch.float16:
        return x
    big = torch.finfo(x.dtype).max
    overflow = ~torch.isfinite(x).all() if nan_too else torch.isinf(x).any()
    limit = torch.where(overflow, big - 1000, big)  # clamping to ±max changes no finite value
    return torch.clamp(x, min=-limit, max=limit)
