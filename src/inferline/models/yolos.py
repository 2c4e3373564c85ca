"""YOLOS (transformers 4.57.6 YolosModel / YolosForObjectDetection): a ViT over the image patches plus
learnt detection tokens appended at the end; their final states go through class and box MLP heads.

Position embeddings are stored for the configured (height, width) grid and always resized bicubically
to the input's grid, so any image size works. Checkpoints with per-layer ("mid") position embeddings
(use_mid_position_embeddings=True) are refused with a clear error for now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .registry import Family
from .vision import VISION_INPUTS, Detections, MLPPredictionHead, PatchEmbeddings, PreNormEncoder, VisionOutput
from .weights import WeightMap


@dataclass
class YolosConfig(ModelConfig):
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    image_size: list = field(default_factory=lambda: [512, 864])
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    num_detection_tokens: int = 100
    use_mid_position_embeddings: bool = True


class Embeddings(nn.Module):
    def __init__(self, c: YolosConfig):
        super().__init__()
        self.grid = (c.image_size[0] // c.patch_size, c.image_size[1] // c.patch_size)
        self.patch_size, self.num_detection = c.patch_size, c.num_detection_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        self.detection_tokens = nn.Parameter(torch.zeros(1, c.num_detection_tokens, c.hidden_size))
        self.patch_embeddings = PatchEmbeddings(c.num_channels, c.hidden_size, c.patch_size)
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, self.grid[0] * self.grid[1] + c.num_detection_tokens + 1, c.hidden_size))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        B, _, H, W = pixel_values.shape
        x = self.patch_embeddings(pixel_values.to(self.position_embeddings.dtype))  # (B, N, C)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x, self.detection_tokens.expand(B, -1, -1)), dim=1)
        table, D = self.position_embeddings, self.num_detection
        patches = table[:, 1:-D].transpose(1, 2).reshape(1, -1, *self.grid)  # (1, C, gh, gw)
        patches = F.interpolate(patches, size=(H // self.patch_size, W // self.patch_size), mode="bicubic",
                                align_corners=False)
        return x + torch.cat((table[:, :1], patches.flatten(2).transpose(1, 2), table[:, -D:]), dim=1)


class YolosModel(nn.Module):
    def __init__(self, c: YolosConfig):
        super().__init__()
        if c.use_mid_position_embeddings:
            raise ValueError("YOLOS checkpoints with use_mid_position_embeddings=True are not supported yet.")
        self.embeddings = Embeddings(c)
        self.encoder = PreNormEncoder(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size,
                                      c.hidden_act, c.layer_norm_eps, c.qkv_bias)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> VisionOutput:
        return VisionOutput(self.layernorm(self.encoder(self.embeddings(pixel_values))), None)


class YolosForObjectDetection(nn.Module):
    def __init__(self, c: YolosConfig):
        super().__init__()
        self.vit = YolosModel(c)
        self.num_detection = c.num_detection_tokens
        self.class_labels_classifier = MLPPredictionHead(c.hidden_size, c.hidden_size, c.num_labels + 1, 3)
        self.bbox_predictor = MLPPredictionHead(c.hidden_size, c.hidden_size, 4, 3)

    def forward(self, pixel_values: torch.Tensor) -> Detections:
        tokens = self.vit(pixel_values).last_hidden_state[:, -self.num_detection:]  # (B, D, C)
        return Detections(self.class_labels_classifier(tokens), self.bbox_predictor(tokens).sigmoid())


def build(c: YolosConfig, head: str) -> nn.Module:
    return YolosModel(c) if head == "base" else YolosForObjectDetection(c)


FAMILY = Family("yolos", YolosConfig, ("base", "object-detection"), build, lambda c, head: WeightMap(),
                lambda c: "vit", input_names=VISION_INPUTS, max_tokens=lambda c: None)
