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
from .heads import CausalLMModel
from .layers import KVCache, Linear, RMSNorm, Rotary, activation, apply_rotary, attention, causal_mask, merge_heads, \
    positions_from_mask
from .registry import Family, UnsupportedModelError
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
    def from_hf(cls, config: dict[str, Any]):
        forced, defaults = cls.variants.get(config.get("model_type"), ({}, {}))
        out = super().from_hf({**defaults, **config, **forced})
        out.raw = dict(config)
        return out

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


class Attention(nn.Module):
    """Causal self-attention with rotary positions, GQA and optional q/k norm (the sliding window is in the mask)."""

    def __init__(self, cfg: LlamaConfig, layer_idx: int):
        super().__init__()
        C, H, Hkv, D = cfg.hidden_size, cfg.num_attention_heads, cfg.kv_heads, cfg.dim
        self.layer_idx, self.num_heads, self.num_kv_heads, self.head_dim = layer_idx, H, Hkv, D
        qkv_bias = cfg.attention_bias if cfg.qkv_bias is None else cfg.qkv_bias
        self.fused = cfg.fused_projections
        if self.fused:
            self.qkv_proj = Linear(C, (H + 2 * Hkv) * D, bias=qkv_bias)
        else:
            self.q_proj = Linear(C, H * D, bias=qkv_bias)
            self.k_proj = Linear(C, Hkv * D, bias=qkv_bias)
            self.v_proj = Linear(C, Hkv * D, bias=qkv_bias)
        self.o_proj = Linear(H * D, C, bias=cfg.attention_bias)
        self.q_norm = RMSNorm(D, cfg.rms_norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(D, cfg.rms_norm_eps) if cfg.qk_norm else None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
                cache: KVCache | None) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        if self.fused:
            q, k, v = self.qkv_proj(x).split([H * D, Hkv * D, Hkv * D], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q, k, v = q.view(B, T, H, D), k.view(B, T, Hkv, D), v.view(B, T, Hkv, D)
        if self.q_norm is not None:  # Qwen3: RMSNorm over each head's channels, before rotary
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, S, D)
        out = attention(q, k, v, mask, is_causal=mask is None and T > 1)
        return self.o_proj(merge_heads(out))  # (B, T, C)


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU, with gate and up as one `gate_up_proj` when fused (Phi-3)."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str, bias: bool = False,
                 fused: bool = False):
        super().__init__()
        self.fused = fused
        if fused:
            self.gate_up_proj = Linear(hidden_size, 2 * intermediate_size, bias=bias)
        else:
            self.gate_proj = Linear(hidden_size, intermediate_size, bias=bias)
            self.up_proj = Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=bias)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(self.act(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(cfg, layer_idx)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, cfg.mlp_bias,
                            cfg.fused_projections)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, rope, mask, cache) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, cache)
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
        self.cache_shape = (cfg.num_hidden_layers, cfg.kv_heads, cfg.dim)

    def new_cache(self, batch_size: int, max_length: int) -> KVCache:
        weight = self.embed_tokens.weight
        layers, kv_heads, head_dim = self.cache_shape
        return KVCache(layers, batch_size, kv_heads, max_length, head_dim, weight.dtype, weight.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
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
        x = self.embed_tokens(input_ids)  # (B, T, C)
        rope = self.rotary(position_ids, x.dtype, seq_len=S)  # S: the longest row's length, without a host sync
        masks = {w: None if plain and (w is None or w >= S) else causal_mask(attention_mask, T, x.dtype, w)
                 for w in set(self.windows)}
        for layer, window in zip(self.layers, self.windows):
            x = layer(x, rope, masks[window], cache)
        if cache is not None:
            cache.advance(T)
        return self.norm(x)


def build(cfg: LlamaConfig, head: str) -> nn.Module:
    if head == "base":
        return LlamaModel(cfg)
    if head == "causal-lm":
        return CausalLMModel(LlamaModel(cfg), "model", cfg.hidden_size, cfg.vocab_size)
    raise UnsupportedModelError(f"no head {head!r}")


def weight_map(cfg: LlamaConfig, head: str) -> WeightMap:
    unused = [r"rotary_emb\.inv_freq$"]  # old checkpoints saved the rotary buffer
    tied = {"lm_head.weight": "model.embed_tokens.weight"} if head == "causal-lm" and cfg.tie_word_embeddings else {}
    return WeightMap([], unused, tied)


def base_prefix(cfg: LlamaConfig) -> str:
    return "model"


FAMILY = Family("llama", LlamaConfig, HEADS, build, weight_map, base_prefix,
                input_names=("input_ids", "attention_mask"))
