"""ViT and DeiT (transformers 4.57.6 ViTModel / DeiTModel and their image-classification heads).

DeiT is ViT with a distillation token after the class token; its distilled checkpoints
(DeiTForImageClassificationWithTeacher) average a class-token and a distillation-token classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .heads import ImageClassificationModel
from .kernels import FastLinear as Linear
from .registry import Family
from .vision import VISION_INPUTS, Pooler, PreNormEncoder, TokenEmbeddings, VisionOutput
from .weights import WeightMap


@dataclass
class ViTConfig(ModelConfig):
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    pooler_output_size: int | None = None
    pooler_act: str = "tanh"

    @property
    def distillation(self) -> bool:
        return self.model_type == "deit"

    @property
    def with_teacher(self) -> bool:
        return any(a.endswith("WithTeacher") for a in self.raw.get("architectures") or [])


class ViTModel(nn.Module):
    def __init__(self, c: ViTConfig, pooler: bool = True):
        super().__init__()
        self.embeddings = TokenEmbeddings(c.num_channels, c.hidden_size, c.patch_size, c.image_size,
                                          distillation=c.distillation)
        self.encoder = PreNormEncoder(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size,
                                      c.hidden_act, c.layer_norm_eps, c.qkv_bias)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.pooler = Pooler(c.hidden_size, c.pooler_output_size or c.hidden_size, c.pooler_act) if pooler else None

    def forward(self, pixel_values: torch.Tensor) -> VisionOutput:
        hidden = self.layernorm(self.encoder(self.embeddings(pixel_values)))  # (B, T, C)
        return VisionOutput(hidden, self.pooler(hidden) if self.pooler is not None else None)


def build(c: ViTConfig, head: str) -> nn.Module:
    if head == "base":
        return ViTModel(c)
    prefix = c.model_type
    if c.with_teacher:
        heads = {"cls_classifier": (Linear(c.hidden_size, c.num_labels), "cls"),
                 "distillation_classifier": (Linear(c.hidden_size, c.num_labels), "distillation")}
    else:
        heads = {"classifier": (Linear(c.hidden_size, c.num_labels), "cls")}
    return ImageClassificationModel(ViTModel(c, pooler=False), prefix, heads)


def weight_map(c: ViTConfig, head: str) -> WeightMap:
    # A base model loaded from a classifier checkpoint has no pooler weights; transformers initialises them
    # randomly, which makes pool=True meaningless — here it is an error naming the tensors.
    return WeightMap(unused=[r"(^|\.)pooler\."] if head != "base" else [r"(^|\.)embeddings\.mask_token$"])


FAMILY = Family("vit", ViTConfig, ("base", "image-classification"), build, weight_map, lambda c: c.model_type,
                input_names=VISION_INPUTS, max_tokens=lambda c: None)
