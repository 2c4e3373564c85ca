"""T5 (t5, t5 v1.1 / flan-t5 with gated-GELU feed-forward, mt5): encoder-decoder with relative position buckets.

Matches transformers 4.57.6 `modeling_t5`. Distinctive parts: pre-norm blocks with RMS norms (no mean, no
bias), no 1/sqrt(d) attention scaling, and a relative position bias table that only the first layer of
each stack owns and every later layer reuses; here the stack owns it (renamed in the weight map), computes
the bias once per call and passes it with the mask to all layers. With tied embeddings the decoder output
is rescaled by d_model**-0.5 before the shared lm_head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .config import ModelConfig
from .kernels import FastLinear
from .layers import MLP, Attention, GatedMLP, KVCache, RMSNorm, clamp_fp16_overflow, decode_stack, new_cache, \
    padding_mask
from .registry import Family, UnsupportedModelError
from .weights import WeightMap

# mT5's config defaults where they differ from T5's (for keys a config.json leaves out).
MT5_DEFAULTS = dict(vocab_size=250112, d_ff=1024, num_layers=8, num_heads=6, feed_forward_proj="gated-gelu",
                    tie_word_embeddings=False, decoder_start_token_id=0)


@dataclass
class T5Config(ModelConfig):
    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 1
    bos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    type_defaults: ClassVar[dict[str, dict]] = {"mt5": MT5_DEFAULTS}

    def __post_init__(self):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        if self.decoder_start_token_id is None:  # T5 starts decoding from the pad token
            self.decoder_start_token_id = self.pad_token_id
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(f"`feed_forward_proj` must be 'ACT' or 'gated-ACT' (e.g. 'relu', 'gated-gelu'); "
                             f"got {self.feed_forward_proj!r}.")
        self.is_gated_act = parts[0] == "gated"
        # transformers maps "gated-gelu" to the tanh approximation (gelu_new); other names are taken as is.
        self.dense_act_fn = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]



def relative_buckets(relative: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
                     ) -> torch.Tensor:
    """Bucket of each (key - query) distance: exact for small ones, log-spaced up to max_distance, where
    all farther distances share the last bucket. Bidirectional stacks split the buckets by sign."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = (relative > 0).long() * num_buckets
        relative = relative.abs()
    else:  # the decoder only looks back: future distances clamp to 0
        relative = (-relative).clamp(min=0)
    max_exact = num_buckets // 2
    log_ratio = torch.log(relative.float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return buckets + torch.where(relative < max_exact, relative, large)


class T5AttentionLayer(nn.Module):
    """pre-RMSNorm → attention (unscaled) → residual: T5LayerSelfAttention / T5LayerCrossAttention."""

    def __init__(self, cfg: T5Config, name: str, layer_idx: int, causal: bool = False):
        super().__init__()
        self.attention_name = name  # "SelfAttention" or "EncDecAttention", as in the checkpoint
        self.add_module(name, Attention(cfg.d_model, cfg.num_heads, head_dim=cfg.d_kv, bias=False, scale=1.0,
                                        names=("q", "k", "v", "o"), causal=causal, layer_idx=layer_idx))
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, to_weight_dtype=True)

    def forward(self, x, mask, cache=None, source=None):
        return x + self._modules[self.attention_name](self.layer_norm(x), mask, cache, source)


class T5LayerFF(nn.Module):
    """pre-RMSNorm → wi → act → wo, or gated: act(wi_0) * wi_1 → wo (v1.1, flan-t5, mt5) → residual."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.DenseReluDense = GatedMLP(cfg.d_model, cfg.d_ff, cfg.dense_act_fn, names=("wi_0", "wi_1", "wo")) \
            if cfg.is_gated_act else MLP(cfg.d_model, cfg.d_ff, cfg.dense_act_fn, bias=False, names=("wi", "wo"))
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, to_weight_dtype=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config, is_decoder: bool, layer_idx: int):
        super().__init__()
        parts = [T5AttentionLayer(cfg, "SelfAttention", layer_idx, causal=is_decoder)]
        if is_decoder:
            parts.append(T5AttentionLayer(cfg, "EncDecAttention", layer_idx))
        self.layer = nn.ModuleList([*parts, T5LayerFF(cfg)])

    def forward(self, x, mask, source=None, cross_mask=None, cache=None):
        x = clamp_fp16_overflow(self.layer[0](x, mask, cache))
        if len(self.layer) == 3:
            x = clamp_fp16_overflow(self.layer[1](x, cross_mask, cache, source))
        return clamp_fp16_overflow(self.layer[-1](x))


class T5Stack(nn.Module):
    """Blocks + final norm; owns the relative position bias table (block 0's in the checkpoint)."""

    def __init__(self, cfg: T5Config, num_layers: int, is_decoder: bool):
        super().__init__()
        self.relative_attention_bias = nn.Embedding(cfg.relative_attention_num_buckets, cfg.num_heads)
        self.block = nn.ModuleList(T5Block(cfg, is_decoder, i) for i in range(num_layers))
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, to_weight_dtype=True)
        self.is_decoder = is_decoder
        self.num_buckets, self.max_distance = cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance

    def position_bias(self, start: int, T: int, device) -> torch.Tensor:
        """(1, H, T, start + T) bias of queries at positions start.. over keys at 0..start+T-1."""
        query = torch.arange(start, start + T, device=device)[:, None]
        key = torch.arange(start + T, device=device)[None, :]
        buckets = relative_buckets(key - query, not self.is_decoder, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]

    def forward(self, x, mask, source=None, cross_mask=None, cache=None) -> torch.Tensor:
        start = cache.length if cache is not None else 0
        bias = self.position_bias(start, x.shape[1], x.device).to(x.dtype)
        mask = bias if mask is None else bias + mask  # (B, H, T, S)
        for block in self.block:
            x = block(x, mask, source, cross_mask, cache)
        return self.final_layer_norm(x)


class T5ForConditionalGeneration(nn.Module):
    """Encoder-decoder LM: `encode` once, then `decode` (with a KVCache) per step; see generation/."""

    is_encoder_decoder = True

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = T5Stack(cfg, cfg.num_layers, is_decoder=False)
        self.decoder = T5Stack(cfg, cfg.num_decoder_layers, is_decoder=True)
        self.lm_head = FastLinear(cfg.d_model, cfg.vocab_size, bias=False)
        self.output_scale = cfg.d_model ** -0.5 if cfg.tie_word_embeddings else 1.0

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.shared(input_ids)
        return self.encoder(x, padding_mask(attention_mask, x.dtype))  # (B, S, C)

    def decode(self, decoder_input_ids: torch.Tensor, encoder_hidden: torch.Tensor,
               encoder_attention_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        x = decode_stack(self.decoder, self.shared(decoder_input_ids), encoder_hidden, encoder_attention_mask, cache)
        return self.lm_head(x * self.output_scale)  # (B, T, V)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for `decoder_input_ids`, as transformers' forward."""
        if decoder_input_ids is None:
            raise ValueError("T5 needs `decoder_input_ids` for a full forward; generation uses encode/decode.")
        return self.decode(decoder_input_ids, self.encode(input_ids, attention_mask), attention_mask)

    new_cache = new_cache


def build(cfg: T5Config, head: str) -> nn.Module:
    if head == "seq2seq-lm":
        return T5ForConditionalGeneration(cfg)
    raise UnsupportedModelError(f"no head {head!r}")


def weight_map(cfg: T5Config, head: str) -> WeightMap:
    renames = [
        (r"^(encoder|decoder)\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.",
         r"\1.relative_attention_bias."),
        (r"^(encoder|decoder)\.embed_tokens\.weight$", "shared.weight"),  # tied copies some checkpoints keep
    ]
    unused = [r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$"]
    tied = {"lm_head.weight": "shared.weight"} if cfg.tie_word_embeddings else {}
    # transformers keeps `wo` in float32 when loading in float16: float16 T5 overflows otherwise
    return WeightMap(renames, unused, tied, keep_float32=[r"\.DenseReluDense\.wo\.weight$"])


FAMILY = Family("t5", T5Config, ("seq2seq-lm",), build, weight_map, lambda cfg: "",
                input_names=("input_ids", "attention_mask"), max_tokens=lambda cfg: None)
