"""DINOv2 (transformers 4.57.6 Dinov2Model / Dinov2ForImageClassification).

The ViT pre-norm block with layer scales, position embeddings always interpolated to the input's patch
grid (any image size), a class-token pooler, and a classifier over [class token, mean of patch tokens].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .heads import ImageClassificationModel
from .kernels import FastLinear as Linear
from .registry import Family
from .vision import VISION_INPUTS, PreNormEncoder, TokenEmbeddings, VisionOutput
from .weights import WeightMap


@dataclass
class Dinov2Config(ModelConfig):
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: float = 4
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    qkv_bias: bool = True
    use_swiglu_ffn: bool = False
    use_mask_token: bool = True


class Dinov2Model(nn.Module):
    def __init__(self, c: Dinov2Config):
        super().__init__()
        if c.use_swiglu_ffn:
            raise ValueError("DINOv2 checkpoints with use_swiglu_ffn=True (the giant size) are not supported yet.")
        self.embeddings = TokenEmbeddings(c.num_channels, c.hidden_size, c.patch_size, c.image_size,
                                          mask_token=c.use_mask_token, interpolate=True)
        self.encoder = PreNormEncoder(c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
                                      int(c.hidden_size * c.mlp_ratio), c.hidden_act, c.layer_norm_eps, c.qkv_bias,
                                      layer_scale=True)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> VisionOutput:
        hidden = self.layernorm(self.encoder(self.embeddings(pixel_values)))  # (B, T, C)
        return VisionOutput(hidden, hidden[:, 0])


def build(c: Dinov2Config, head: str) -> nn.Module:
    if head == "base":
        return Dinov2Model(c)
    return ImageClassificationModel(Dinov2Model(c), "dinov2",
                                    {"classifier": (Linear(2 * c.hidden_size, c.num_labels), "cls+mean")})


WEIGHTS = WeightMap(renames=[(r"\.norm1\.", ".layernorm_before."), (r"\.norm2\.", ".layernorm_after."),
                             (r"\.mlp\.fc1\.", ".intermediate.dense."), (r"\.mlp\.fc2\.", ".output.dense.")])

FAMILY = Family("dinov2", Dinov2Config, ("base", "image-classification"), build, lambda c, head: WEIGHTS,
                lambda c: "dinov2", input_names=VISION_INPUTS, max_tokens=lambda c: None)
