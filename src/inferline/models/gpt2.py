"""GPT-2: learned absolute positions, pre-LayerNorm decoder blocks, fused qkv, tied LM head.

Matches transformers 4.57.6 `modeling_gpt2`. The checkpoint's Conv1D layers store weights as (in, out);
the weight map lists them as transposed, so the modules here are plain linears (kernels.FastLinear). Attention scaling
follows the config (`scale_attn_weights`, `scale_attn_by_inverse_layer_idx`) as transformers' eager
path does; `reorder_and_upcast_attn` computes attention in float32. With `add_cross_attention` (the decoder
of a vision-encoder-decoder) each block also attends to an encoder output between self-attention and MLP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import ModelConfig
from .heads import decoder_head
from .layers import MLP, Attention, KVCache, decoder_layers, decoder_step, new_cache
from .registry import Family
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
    def hidden_size(self) -> int:  # transformers' attribute_map alias
        return self.n_embd

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class GPT2Block(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), [x + crossattention(ln_cross_attn(x), encoder output)], then
    x + mlp(ln_2(x))."""

    def __init__(self, cfg: GPT2Config, layer_idx: int):
        super().__init__()
        C = cfg.n_embd
        scale = cfg.head_dim ** -0.5 if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            scale /= layer_idx + 1
        self.ln_1 = nn.LayerNorm(C, eps=cfg.layer_norm_epsilon)
        self.attn = Attention(C, cfg.n_head, names=("c_attn", "c_proj"), fused=True, scale=scale, causal=True,
                              upcast=cfg.reorder_and_upcast_attn, layer_idx=layer_idx)
        self.crossattention = self.ln_cross_attn = None
        if cfg.add_cross_attention:  # q from the decoder, k/v fused from the encoder output
            self.crossattention = Attention(C, cfg.n_head, names=("q_attn", "c_attn", "c_proj"), fused_kv=True,
                                            scale=scale, upcast=cfg.reorder_and_upcast_attn, layer_idx=layer_idx)
            self.ln_cross_attn = nn.LayerNorm(C, eps=cfg.layer_norm_epsilon)
        self.ln_2 = nn.LayerNorm(C, eps=cfg.layer_norm_epsilon)
        inner = cfg.n_inner if cfg.n_inner is not None else 4 * C
        self.mlp = MLP(C, inner, cfg.activation_function, names=("c_fc", "c_proj"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None,
                encoder_hidden: torch.Tensor | None = None, encoder_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache)
        if self.crossattention is not None:
            x = x + self.crossattention(self.ln_cross_attn(x), encoder_mask, cache, source=encoder_hidden)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    """Token + position embeddings → blocks → ln_f; returns hidden states (B, T, C)."""

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.h = nn.ModuleList(GPT2Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.windows = [None] * cfg.n_layer  # no sliding window

    new_cache = new_cache

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, position_ids: torch.Tensor | None = None,
                encoder_hidden: torch.Tensor | None = None, encoder_mask: torch.Tensor | None = None) -> torch.Tensor:
        """encoder_hidden (B or B/beams, S, C) and its additive key mask (or None) feed the cross-attention."""
        if self.cfg.add_cross_attention and encoder_hidden is None:
            raise ValueError("This GPT-2 has cross-attention (add_cross_attention=True): pass `encoder_hidden`.")
        step = decoder_step(input_ids, attention_mask, cache, position_ids, self.wte.weight.dtype)
        x = self.wte(input_ids) + self.wpe(step.positions)  # (B, T, C)
        return self.ln_f(decoder_layers(self.h, x, step, cache, self.windows, encoder_hidden, encoder_mask))


def build(cfg: GPT2Config, head: str) -> nn.Module:
    return decoder_head(head, GPT2Model(cfg), "transformer", cfg.n_embd, cfg.vocab_size)


def weight_map(cfg: GPT2Config, head: str) -> WeightMap:
    # Old checkpoints saved the causal-mask buffers (attn.bias, attn.masked_bias); base heads skip lm_head.
    unused = [r"\.attn\.bias$", r"\.attn\.masked_bias$"] + ([r"^lm_head\."] if head == "base" else [])
    tied = {"lm_head.weight": "transformer.wte.weight"} if head == "causal-lm" and cfg.tie_word_embeddings else {}
    transpose = [r"\.(c_attn|c_proj|c_fc|q_attn)\.weight$"]
    return WeightMap(unused=unused, tied=tied, transpose=transpose)


FAMILY = Family("gpt2", GPT2Config, ("base", "causal-lm"), build, weight_map, lambda cfg: "transformer",
                input_names=("input_ids", "attention_mask"), max_tokens=lambda cfg: cfg.n_positions)
