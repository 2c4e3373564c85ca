"""VisionEncoderDecoder (transformers 4.57.6 `modeling_vision_encoder_decoder`): any vision backbone as the
encoder, any cross-attending causal LM as the decoder (ViT + GPT-2 in ydshieh/vit-gpt2-coco-en).

Nothing here is a block of its own: the encoder is its family's "base" module, the decoder its family's
"causal-lm" module built with cross-attention, and both load under their checkpoint prefixes (`encoder.`,
`decoder.`) with their own families' weight maps. When the widths differ and the decoder declares no
`cross_attention_hidden_size`, `enc_to_dec_proj` maps the encoder output to the decoder's width, as
transformers does. Decoding goes through `inferline.generation` (`encode` once, `decode` per step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import ModelConfig
from .kernels import FastLinear as Linear
from .layers import KVCache, key_padding_mask, new_cache
from .registry import Family, UnsupportedModelError, family_for
from .weights import WeightMap

HEADS = ("vision2seq",)


@dataclass
class VisionEncoderDecoderConfig(ModelConfig):
    encoder: dict = field(default_factory=dict)
    decoder: dict = field(default_factory=dict)
    decoder_start_token_id: int | None = None

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> "VisionEncoderDecoderConfig":
        out = super().from_hf(config)
        for part in ("encoder", "decoder"):
            if not (getattr(out, part) or {}).get("model_type"):
                raise ValueError(f"A vision-encoder-decoder config.json needs `{part}` with its model_type.")
        out.encoder_family, out.decoder_family = family_for(out.encoder["model_type"]), \
            family_for(out.decoder["model_type"])
        if "causal-lm" not in out.decoder_family.heads:
            raise UnsupportedModelError(f"The decoder {out.decoder['model_type']!r} has no causal-lm head in "
                                        f"inferline.")
        # transformers' VisionEncoderDecoderModel turns the decoder into a cross-attending decoder
        out.encoder_config = out.encoder_family.config_class.from_hf(out.encoder)
        out.decoder_config = out.decoder_family.config_class.from_hf({**out.decoder, "add_cross_attention": True,
                                                                      "is_decoder": True})
        out.max_position_embeddings = out.decoder_config.max_position_embeddings
        out.vocab_size = out.decoder_config.vocab_size
        return out


class VisionEncoderDecoderModel(nn.Module):
    """`encode` pixels once, then `decode` tokens over a KVCache (see inferline.generation)."""

    is_encoder_decoder = True

    def __init__(self, cfg: VisionEncoderDecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = cfg.encoder_family.build(cfg.encoder_config, "base")
        self.decoder = cfg.decoder_family.build(cfg.decoder_config, "causal-lm")
        width, decoder_width = cfg.encoder_config.hidden_size, cfg.decoder_config.hidden_size
        project = width != decoder_width and cfg.decoder.get("cross_attention_hidden_size") is None
        self.enc_to_dec_proj = Linear(width, decoder_width) if project else None

    def encode(self, pixel_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(pixel_values).last_hidden_state  # (B, S, C_enc)
        return hidden if self.enc_to_dec_proj is None else self.enc_to_dec_proj(hidden)  # (B, S, C_dec)

    def decode(self, decoder_input_ids: torch.Tensor, encoder_hidden: torch.Tensor,
               encoder_attention_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        mask = None if encoder_attention_mask is None else \
            key_padding_mask(encoder_attention_mask, encoder_hidden.dtype)
        return self.decoder(decoder_input_ids, None, cache, None, encoder_hidden=encoder_hidden,
                            encoder_mask=mask)  # (B, T, V)

    def forward(self, pixel_values: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.decode(decoder_input_ids, self.encode(pixel_values))

    def prompt_ids(self, encoded: list[int] | None) -> list[int] | None:
        """The decoder's first tokens for a text prompt's encoding: none is taken (as transformers), so None
        (generation starts from decoder_start_token_id)."""
        if encoded is not None:
            raise ValueError("Model type vision-encoder-decoder does not support conditional text generation: "
                             "call it without `prompt`.")
        return None

    def new_cache(self, batch_size: int, max_length: int) -> KVCache:
        return new_cache(self.decoder, batch_size, max_length)


def build(cfg: VisionEncoderDecoderConfig, head: str) -> nn.Module:
    return VisionEncoderDecoderModel(cfg)


def weight_map(cfg: VisionEncoderDecoderConfig, head: str) -> WeightMap:
    return WeightMap.merge(cfg.encoder_family.weight_map(cfg.encoder_config, "base").under("encoder."),
                           cfg.decoder_family.weight_map(cfg.decoder_config, "causal-lm").under("decoder."))


def _input_names(cfg: VisionEncoderDecoderConfig) -> tuple[str, ...]:
    names = cfg.encoder_family.input_names
    return names(cfg.encoder_config) if callable(names) else names


FAMILY = Family("vision-encoder-decoder", VisionEncoderDecoderConfig, HEADS, build, weight_map, lambda cfg: "",
                input_names=_input_names, max_tokens=lambda cfg: None)
