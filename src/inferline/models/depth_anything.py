"""Depth Anything (v1 and v2; transformers 4.57.6 DepthAnythingForDepthEstimation): DPT's neck over a
DINOv2 backbone (models/dinov2.py), read at any aspect ratio.

What differs from DPT is data: the backbone's chosen layers go through its final LayerNorm, the class token
is dropped, fusion upsamples each map to the next one's size, and the head resizes to the patch grid times
the patch size before its last convs; "metric" checkpoints end in a sigmoid times `max_depth`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .dinov2 import WEIGHTS as DINOV2_WEIGHTS
from .dinov2 import Dinov2Config, Dinov2Model
from .dpt import HEAD_RENAMES, DepthModel, Neck
from .registry import Family
from .vision import VISION_INPUTS
from .weights import WeightMap


@dataclass
class DepthAnythingConfig(ModelConfig):
    backbone_config: dict = field(default_factory=dict)
    patch_size: int = 14
    reassemble_hidden_size: int = 384
    reassemble_factors: list = field(default_factory=lambda: [4, 2, 1, 0.5])
    neck_hidden_sizes: list = field(default_factory=lambda: [48, 96, 192, 384])
    fusion_hidden_size: int = 64
    head_in_index: int = -1
    head_hidden_size: int = 32
    depth_estimation_type: str = "relative"
    max_depth: float | None = None

    @property
    def out_layers(self) -> list[int]:
        """The backbone layers read, 0-based and in layer order (stage k is the output of layer k - 1)."""
        b = self.backbone_config or {}
        if b.get("out_indices"):
            return sorted(int(i) - 1 for i in b["out_indices"])
        names = b.get("out_features") or [f"stage{b.get('num_hidden_layers', 12)}"]
        return sorted(int(name.removeprefix("stage")) - 1 for name in names)


class Dinov2Backbone(Dinov2Model):
    def __init__(self, c: Dinov2Config, layers: list[int], layernorm: bool):
        super().__init__(c)
        self.layers, self.apply_layernorm = layers, layernorm

    def tokens(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        states = self.encoder.collect(self.embeddings(pixel_values), self.layers)
        return [self.layernorm(s) for s in states] if self.apply_layernorm else states


class DepthAnythingHead(nn.Module):
    def __init__(self, c: DepthAnythingConfig):
        super().__init__()
        C = c.fusion_hidden_size
        if c.depth_estimation_type not in ("relative", "metric"):
            raise ValueError(f"Unknown depth_estimation_type {c.depth_estimation_type!r}: 'relative' or 'metric'.")
        self.index, self.patch_size = c.head_in_index, c.patch_size
        self.conv1 = nn.Conv2d(C, C // 2, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(C // 2, c.head_hidden_size, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(c.head_hidden_size, 1, kernel_size=1)
        self.metric = c.depth_estimation_type == "metric"
        self.max_depth = c.max_depth if c.max_depth is not None else 1

    def forward(self, features: list[torch.Tensor], h: int, w: int) -> torch.Tensor:
        x = self.conv1(features[self.index])
        x = F.interpolate(x, (h * self.patch_size, w * self.patch_size), mode="bilinear", align_corners=True)
        x = self.conv3(F.relu(self.conv2(x)))
        x = torch.sigmoid(x) if self.metric else F.relu(x)
        return (x * self.max_depth).squeeze(1)  # (B, H, W)


def build(c: DepthAnythingConfig, head: str) -> nn.Module:
    b = c.backbone_config or {}
    if b.get("model_type", "dinov2") != "dinov2":
        raise ValueError(f"Depth Anything with a {b.get('model_type')!r} backbone is not supported; DINOv2 is.")
    backbone = Dinov2Backbone(Dinov2Config.from_hf({"model_type": "dinov2", **b}), c.out_layers,
                              b.get("apply_layernorm", True))
    neck = Neck(c.reassemble_hidden_size, c.neck_hidden_sizes, c.reassemble_factors, c.fusion_hidden_size,
                readout="ignore", to_next_size=True)
    return DepthModel("backbone", backbone, neck, DepthAnythingHead(c), c.patch_size, square_grid=False)


WEIGHTS = WeightMap(renames=DINOV2_WEIGHTS.renames + HEAD_RENAMES)

FAMILY = Family("depth_anything", DepthAnythingConfig, ("depth-estimation",), build, lambda c, head: WEIGHTS,
                lambda c: "", input_names=VISION_INPUTS, max_tokens=lambda c: None)
