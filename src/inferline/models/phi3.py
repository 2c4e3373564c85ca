"""Phi-3: the Llama decoder with fused projections, matching transformers 4.57.6 `modeling_phi3`.

Differences from Llama, all data: q/k/v live in one `qkv_proj` and gate/up in one `gate_up_proj`
(kept fused, as the checkpoint stores them), rotary may cover only `partial_rotary_factor` of each
head, `rope_scaling` is LongRoPE (old checkpoints call it "su" or "yarn"), and `sliding_window`, when
set, applies to every layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .llama import HEADS, LlamaConfig, base_prefix, build, weight_map
from .registry import Family


@dataclass
class Phi3Config(LlamaConfig):
    variants: ClassVar[dict[str, tuple[dict, dict]]] = {
        "phi3": (dict(window_rule="all", fused_projections=True, attention_bias=False, mlp_bias=False),
                 dict(rms_norm_eps=1e-5, max_position_embeddings=4096, original_max_position_embeddings=4096,
                      bos_token_id=1, eos_token_id=32000, pad_token_id=32000)),
    }

    def __post_init__(self):
        kind = (self.rope_scaling or {}).get("type")
        if kind in ("su", "yarn"):  # Phi3Config's backward-compatible names for LongRoPE
            self.rope_scaling = {**self.rope_scaling, "type": "longrope"}


FAMILY = Family("phi3", Phi3Config, HEADS, build, weight_map, base_prefix,
                input_names=("input_ids", "attention_mask"))
