"""GPT-2: learned absolute positions, pre-LayerNorm decoder blocks, fused qkv, tied LM head.

Matches transformers 4.57.6 `modeling_gpt2`. The checkpoint's Conv1D layers store weights as (in, out);
the weight map lists them as transposed, so the modules here are plain linears (layers.Linear). Attention scaling
follows the config (`scale_attn_weights`, `scale_attn_by_inverse_layer_idx`) as transformers' eager
path does; `reorder_and_upcast_attn` computes attention in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import ModelConfig
from .heads import CausalLMModel
from .layers import KVCache, Linear, activation, attention, causal_mask, merge_heads, positions_from_mask, split_heads
from .registry import Family, UnsupportedModelError
from .weights import WeightMap


@dataclass
class GPT2Config(ModelConfig):
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    pad_token_id: int | None = None
    tie_word_embeddings: bool = True

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> "GPT2Config":
        out = super().from_hf(config)
        out.max_position_embeddings = out.n_positions  # transformers' attribute_map alias
        return out

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class GPT2Attention(nn.Module):
    """Causal self-attention with one fused qkv projection (`c_attn`), writing keys/values to the cache."""

    def __init__(self, cfg: GPT2Config, layer_idx: int):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd {cfg.n_embd} is not a multiple of n_head {cfg.n_head}.")
        C = cfg.n_embd
        self.num_heads, self.layer_idx = cfg.n_head, layer_idx
        self.c_attn = Linear(C, 3 * C)
        self.c_proj = Linear(C, C)
        scale = cfg.head_dim ** -0.5 if cfg.scale_attn_weights else 1.0
        self.scale = scale / (layer_idx + 1) if cfg.scale_attn_by_inverse_layer_idx else scale
        self.upcast = cfg.reorder_and_upcast_attn

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.c_attn(x).chunk(3, dim=-1))  # (B, H, T, D)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, H, S, D)
        is_causal = mask is None and q.shape[2] > 1
        if self.upcast:  # attention computed in float32 (matters for half-precision weights)
            mask = None if mask is None else mask.float()
            out = attention(q.float(), k.float(), v.float(), mask, self.scale, is_causal).to(x.dtype)
        else:
            out = attention(q, k, v, mask, self.scale, is_causal)
        return self.c_proj(merge_heads(out))  # (B, T, C)


class GPT2MLP(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        inner = cfg.n_inner if cfg.n_inner is not None else 4 * cfg.n_embd
        self.c_fc = Linear(cfg.n_embd, inner)
        self.c_proj = Linear(inner, cfg.n_embd)
        self.act = activation(cfg.activation_function)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class GPT2Block(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, cfg: GPT2Config, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = GPT2Attention(cfg, layer_idx)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = GPT2MLP(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    """Token + position embeddings → blocks → ln_f; returns hidden states (B, T, C)."""

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        if cfg.add_cross_attention:
            raise UnsupportedModelError("GPT-2 with add_cross_attention=True is not supported.")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.h = nn.ModuleList(GPT2Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        if attention_mask is None and past:  # cached keys with no mask: everything so far is real
            attention_mask = torch.ones(B, past + T, dtype=torch.long, device=input_ids.device)
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask, T) if attention_mask is not None \
                else torch.arange(T, device=input_ids.device)[None]
        x = self.wte(input_ids) + self.wpe(position_ids)
        # With no mask and no past the block uses SDPA's is_causal fast path.
        mask = causal_mask(attention_mask, T, x.dtype) if attention_mask is not None else None
        for block in self.h:
            x = block(x, mask, cache)
        if cache is not None:
            cache.advance(T)
        return self.ln_f(x)  # (B, T, C)

    def new_cache(self, batch_size: int, max_length: int) -> KVCache:
        weight = self.wte.weight
        cfg = self.cfg
        return KVCache(cfg.n_layer, batch_size, cfg.n_head, max_length, cfg.head_dim, weight.dtype, weight.device)


def build(cfg: GPT2Config, head: str) -> nn.Module:
    if head == "base":
        return GPT2Model(cfg)
    if head == "causal-lm":
        return CausalLMModel(GPT2Model(cfg), "transformer", cfg.n_embd, cfg.vocab_size)
    raise UnsupportedModelError(f"no head {head!r}")


def weight_map(cfg: GPT2Config, head: str) -> WeightMap:
    # Old checkpoints saved the causal-mask buffers (attn.bias, attn.masked_bias); base heads skip lm_head.
    unused = [r"\.attn\.bias$", r"\.attn\.masked_bias$"] + ([r"^lm_head\."] if head == "base" else [])
    tied = {"lm_head.weight": "transformer.wte.weight"} if head == "causal-lm" and cfg.tie_word_embeddings else {}
    transpose = [r"\.(c_attn|c_proj|c_fc)\.weight$"]
    return WeightMap(unused=unused, tied=tied, transpose=transpose)


FAMILY = Family("gpt2", GPT2Config, ("base", "causal-lm"), build, weight_map, lambda cfg: "transformer",
                input_names=("input_ids", "attention_mask"), max_tokens=lambda cfg: cfg.n_positions)
