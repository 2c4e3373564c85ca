"""Llama and the decoders that differ from it only by data: Mistral, Qwen2, Qwen3 (and Phi-3, see phi3.py).

Matches transformers 4.57.6 `modeling_llama` / `modeling_mistral` / `modeling_qwen2` / `modeling_qwen3`:
pre-norm blocks (RMSNorm → attention with rotary positions and GQA → residual; RMSNorm → SwiGLU MLP →
residual), a final RMSNorm and an untied or tied `lm_head`. What varies by model type is a row of
`LlamaConfig.variants`: Qwen2's hard-coded q/k/v bias, Qwen3's per-head q/k RMSNorm, which keys switch
the sliding window on, and defaults that differ from Llama's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .config import ModelConfig
from .heads import decoder_head
from .layers import Attention, GatedMLP, KVCache, RMSNorm, decoder_layers, decoder_step, new_cache
from .rotary import Rotary
from .registry import Family
from .weights import WeightMap

HEADS = ("base", "causal-lm")


@dataclass
class LlamaConfig(ModelConfig):
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    partial_rotary_factor: float = 1.0
    original_max_position_embeddings: int | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    use_sliding_window: bool = False
    max_window_layers: int = 28
    layer_types: list | None = None
    pad_token_id: int | None = None
    bos_token_id: int | list | None = None
    eos_token_id: int | list | None = None
    # Knobs no config.json holds: transformers fixes them per model type (see `variants`).
    qkv_bias: bool | None = None  # None: follows attention_bias
    qk_norm: bool = False
    fused_projections: bool = False  # Phi-3's qkv_proj / gate_up_proj
    window_rule: str = "none"  # "none" | "all" layers use sliding_window | "layer_types" (Qwen)

    # model_type → (knobs transformers hard-codes for it, defaults that differ from Llama's)
    variants: ClassVar[dict[str, tuple[dict, dict]]] = {
        "llama": ({}, dict(bos_token_id=1, eos_token_id=2)),
        "mistral": (dict(window_rule="all", attention_bias=False, mlp_bias=False),
                    dict(sliding_window=4096, bos_token_id=1, eos_token_id=2)),
        "qwen2": (dict(window_rule="layer_types", qkv_bias=True, attention_bias=False, mlp_bias=False), {}),
        "qwen3": (dict(window_rule="layer_types", qk_norm=True, mlp_bias=False), dict(head_dim=128)),
    }

    @classmethod
    def merged_keys(cls, config: dict[str, Any]) -> dict[str, Any]:
        forced, defaults = cls.variants.get(config.get("model_type"), ({}, {}))
        return {**defaults, **config, **forced}

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    def layer_windows(self) -> list[int | None]:
        """Each layer's sliding window (None: full causal attention)."""
        L = self.num_hidden_layers
        if self.window_rule == "all":
            return [self.sliding_window] * L
        if self.window_rule == "layer_types":  # Qwen: sliding_window only counts with use_sliding_window
            window = self.sliding_window if self.use_sliding_window else None
            types = self.layer_types or ["sliding_attention" if window is not None and i >= self.max_window_layers
                                         else "full_attention" for i in range(L)]
            return [window if t == "sliding_attention" else None for t in types]
        return [None] * L

    def rotary(self) -> Rotary:
        scaling = dict(self.rope_scaling or {})
        if scaling.get("rope_type", scaling.get("type")) == "longrope":
            # transformers reads longrope's original length from the top-level key, where the factor follows it
            original = self.original_max_position_embeddings or self.max_position_embeddings
            scaling["original_max_position_embeddings"] = original
            if self.original_max_position_embeddings:
                scaling["factor"] = self.max_position_embeddings / original
        return Rotary(int(self.dim * self.partial_rotary_factor), self.rope_theta, scaling,
                      self.max_position_embeddings)


class DecoderLayer(nn.Module):
    """x + self_attn(input_layernorm(x)) with rotary positions and GQA, then x + mlp(post_attention_layernorm(x))."""

    def __init__(self, cfg: LlamaConfig, layer_idx: int):
        super().__init__()
        C, fused = cfg.hidden_size, cfg.fused_projections
        self.self_attn = Attention(
            C, cfg.num_attention_heads, cfg.kv_heads, cfg.dim, fused=fused, causal=True, layer_idx=layer_idx,
            bias=cfg.attention_bias if cfg.qkv_bias is None else cfg.qkv_bias, out_bias=cfg.attention_bias,
            names=("qkv_proj", "o_proj") if fused else ("q_proj", "k_proj", "v_proj", "o_proj"),
            qk_norm_eps=cfg.rms_norm_eps if cfg.qk_norm else None)
        self.mlp = GatedMLP(C, cfg.intermediate_size, cfg.hidden_act, cfg.mlp_bias, fused,
                            names=("gate_up_proj", "down_proj") if fused else ("gate_proj", "up_proj", "down_proj"))
        self.input_layernorm = RMSNorm(C, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(C, cfg.rms_norm_eps)

    def forward(self, x, mask, cache, rope) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), mask, cache, rope=rope)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """Embeddings → decoder layers → final norm; returns hidden states (B, T, C)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = cfg.rotary()  # no weights: frequencies are computed from positions
        self.windows = cfg.layer_windows()

    new_cache = new_cache

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        step = decoder_step(input_ids, attention_mask, cache, position_ids, self.embed_tokens.weight.dtype,
                            self.windows)
        x = self.embed_tokens(input_ids)  # (B, T, C)
        rope = self.rotary(step.positions, x.dtype, seq_len=step.length)  # the longest row, without a host sync
        return self.norm(decoder_layers(self.layers, x, step, cache, self.windows, rope))


def build(cfg: LlamaConfig, head: str) -> nn.Module:
    return decoder_head(head, LlamaModel(cfg), "model", cfg.hidden_size, cfg.vocab_size)


def weight_map(cfg: LlamaConfig, head: str) -> WeightMap:
    unused = [r"rotary_emb\.inv_freq$"]  # old checkpoints saved the rotary buffer
    tied = {"lm_head.weight": "model.embed_tokens.weight"} if head == "causal-lm" and cfg.tie_word_embeddings else {}
    return WeightMap([], unused, tied)


def base_prefix(cfg: LlamaConfig) -> str:
    return "model"


FAMILY = Family("llama", LlamaConfig, HEADS, build, weight_map, base_prefix,
                input_names=("input_ids", "attention_mask"))
