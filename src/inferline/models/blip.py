"""BLIP captioning (transformers 4.57.6 `BlipForConditionalGeneration`): a ViT image tower and a BERT-style
text decoder that cross-attends to it.

The image tower is the shared pre-norm ViT block with q/k/v fused (`self_attn.qkv`) under CLIP-style names,
ending in `post_layernorm`; the text decoder is the shared post-norm BERT block with causal self-attention
and `crossattention` over the image embeddings, learned positions, and the masked-LM head tied to the word
embeddings. As BLIP's own generate does, decoding starts from [DEC] (bos_token_id) followed by the prompt's
tokens without its [CLS]/[SEP], and ends at [SEP] (sep_token_id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .bert import BertEmbeddings
from .config import ModelConfig
from .heads import MaskedLMHead
from .layers import KVCache, decode_stack, new_cache
from .post_norm import PostNormEncoder
from .registry import Family
from .vision import CLIP_BLOCK_RENAMES, VISION_INPUTS, PreNormEncoder, TokenEmbeddings
from .vit import ViTConfig
from .weights import WeightMap

HEADS = ("vision2seq",)
BLIP_VISION_DEFAULTS = {"image_size": 384, "layer_norm_eps": 1e-5}  # where BlipVisionConfig differs from ViT's


@dataclass
class BlipTextConfig:
    vocab_size: int = 30524
    hidden_size: int = 768
    encoder_hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 512
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    bos_token_id: int = 30522
    eos_token_id: int = 2
    pad_token_id: int = 0
    sep_token_id: int = 102


@dataclass
class BlipConfig(ModelConfig):
    text_config: dict = field(default_factory=dict)
    vision_config: dict = field(default_factory=dict)

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> "BlipConfig":
        out = super().from_hf(config)
        known = BlipTextConfig.__dataclass_fields__
        out.text = BlipTextConfig(**{k: v for k, v in out.text_config.items() if k in known})
        out.vision = ViTConfig.from_hf({**BLIP_VISION_DEFAULTS, **out.vision_config})  # ViT's fields, BLIP's defaults
        out.text.encoder_hidden_size = out.vision.hidden_size  # transformers' BlipConfig sets it so
        out.max_position_embeddings = out.text.max_position_embeddings
        out.vocab_size = out.text.vocab_size
        return out


class BlipVisionModel(nn.Module):
    """(B, 3, H, W) → image embeddings (B, 1 + patches, C) after post_layernorm."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.embeddings = TokenEmbeddings(3, c.hidden_size, c.patch_size, c.image_size)
        self.encoder = PreNormEncoder(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size,
                                      c.hidden_act, c.layer_norm_eps, fused_qkv=True)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.post_layernorm(self.encoder(self.embeddings(pixel_values)))


class BlipTextModel(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(c.vocab_size, c.hidden_size, c.max_position_embeddings, 0, c.layer_norm_eps)
        self.encoder = PostNormEncoder(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size,
                                       c.hidden_act, c.layer_norm_eps, cross_size=c.encoder_hidden_size)


class BlipTextDecoder(nn.Module):
    """`bert` (embeddings + cross-attending layers) and `cls.predictions` (the tied masked-LM head)."""

    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.bert = BlipTextModel(c)
        self.cls = nn.Module()
        self.cls.predictions = MaskedLMHead(c.hidden_size, c.hidden_size, c.vocab_size, c.hidden_act, c.layer_norm_eps)

    def forward(self, ids: torch.Tensor, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor | None,
                cache: KVCache | None) -> torch.Tensor:
        x = self.bert.embeddings(ids, None, start=cache.length if cache is not None else 0)  # (B, T, C)
        return self.cls.predictions(decode_stack(self.bert.encoder, x, encoder_hidden, encoder_mask, cache))


class BlipForConditionalGeneration(nn.Module):
    """`encode` the image once, then `decode` with a KVCache per step (see inferline.generation)."""

    is_encoder_decoder = True

    def __init__(self, cfg: BlipConfig):
        super().__init__()
        self.cfg = cfg
        self.vision_model = BlipVisionModel(cfg.vision)
        self.text_decoder = BlipTextDecoder(cfg.text)
        # BLIP's generate passes these over whatever the generation config says
        self.generation_overrides = {"eos_token_id": cfg.text.sep_token_id, "pad_token_id": cfg.text.pad_token_id}

    def encode(self, pixel_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.vision_model(pixel_values)  # (B, S, C_vision); every position is real

    def decode(self, decoder_input_ids: torch.Tensor, encoder_hidden: torch.Tensor,
               encoder_attention_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        return self.text_decoder(decoder_input_ids, encoder_hidden, encoder_attention_mask, cache)  # (B, T, V)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        return self.decode(input_ids, self.encode(pixel_values))

    def prompt_ids(self, encoded: list[int] | None) -> list[int]:
        """The decoder's first tokens: [DEC] and the prompt's tokens (its encoding with [CLS] replaced by [DEC]
        and the final [SEP] dropped, as BLIP's generate does); no prompt is [DEC] alone."""
        ids = list(encoded) if encoded is not None else [self.cfg.text.bos_token_id, self.cfg.text.eos_token_id]
        return [self.cfg.text.bos_token_id, *ids[1:]][:-1]

    def new_cache(self, batch_size: int, max_length: int) -> KVCache:
        return new_cache(self, batch_size, max_length)


def build(cfg: BlipConfig, head: str) -> nn.Module:
    return BlipForConditionalGeneration(cfg)


def weight_map(cfg: BlipConfig, head: str) -> WeightMap:
    vision = r"^vision_model\."
    renames = [(vision + r"embeddings\.class_embedding$", "vision_model.embeddings.cls_token"),
               (vision + r"embeddings\.patch_embedding\.", "vision_model.embeddings.patch_embeddings.projection."),
               (vision + r"embeddings\.position_embedding$", "vision_model.embeddings.position_embeddings"),
               (r"(encoder\.)layers\.(\d+)\.self_attn\.qkv\.", r"\1layer.\2.attention.attention.qkv."),
               (r"(encoder\.)layers\.(\d+)\.self_attn\.projection\.", r"\1layer.\2.attention.output.dense."),
               *CLIP_BLOCK_RENAMES,
               (r"^text_decoder\.cls\.predictions\.transform\.", "text_decoder.cls.predictions.")]
    unused = [r"^text_decoder\.cls\.predictions\.decoder\.bias$"]  # the same tensor as predictions.bias
    tied = {"text_decoder.cls.predictions.decoder.weight": "text_decoder.bert.embeddings.word_embeddings.weight"}
    return WeightMap(renames, unused, tied)


FAMILY = Family("blip", BlipConfig, HEADS, build, weight_map, lambda cfg: "", input_names=VISION_INPUTS,
                max_tokens=lambda cfg: None)
