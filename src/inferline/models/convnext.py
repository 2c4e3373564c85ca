"""ConvNeXt (transformers 4.57.6 ConvNextModel / ConvNextForImageClassification): a patchify stem, stages
of depthwise-7x7 → LayerNorm → MLP → layer-scale residual blocks, LayerNorm over the pooled features."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .config import ModelConfig
from .heads import ImageClassificationModel
from .kernels import FastLinear as Linear
from .layers import activation
from .registry import Family
from .vision import VISION_INPUTS, ChannelsFirstLayerNorm, VisionOutput
from .weights import WeightMap


@dataclass
class ConvNextConfig(ModelConfig):
    num_channels: int = 3
    patch_size: int = 4
    hidden_sizes: list = field(default_factory=lambda: [96, 192, 384, 768])
    depths: list = field(default_factory=lambda: [3, 3, 9, 3])
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    layer_scale_init_value: float = 1e-6


class Embeddings(nn.Module):
    def __init__(self, c: ConvNextConfig):
        super().__init__()
        self.patch_embeddings = nn.Conv2d(c.num_channels, c.hidden_sizes[0], c.patch_size, stride=c.patch_size)
        self.layernorm = ChannelsFirstLayerNorm(c.hidden_sizes[0], eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layernorm(self.patch_embeddings(x))


class Block(nn.Module):
    def __init__(self, dim: int, act: str, layer_scale: bool):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.layernorm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = Linear(dim, 4 * dim)
        self.act = activation(act)
        self.pwconv2 = Linear(4 * dim, dim)
        self.layer_scale_parameter = nn.Parameter(torch.ones(dim)) if layer_scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layernorm(self.dwconv(x).permute(0, 2, 3, 1))  # (B, H, W, C)
        h = self.pwconv2(self.act(self.pwconv1(h)))
        if self.layer_scale_parameter is not None:
            h = h * self.layer_scale_parameter
        return x + h.permute(0, 3, 1, 2)


class Stage(nn.Module):
    def __init__(self, c: ConvNextConfig, in_ch: int, out_ch: int, stride: int, depth: int):
        super().__init__()
        self.downsampling_layer = nn.Sequential(ChannelsFirstLayerNorm(in_ch, eps=1e-6),
                                                nn.Conv2d(in_ch, out_ch, stride, stride=stride)) \
            if in_ch != out_ch or stride > 1 else nn.Sequential()
        self.layers = nn.Sequential(*[Block(out_ch, c.hidden_act, c.layer_scale_init_value > 0) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.downsampling_layer(x))


class Encoder(nn.Module):
    def __init__(self, c: ConvNextConfig):
        super().__init__()
        ins = [c.hidden_sizes[0], *c.hidden_sizes[:-1]]
        self.stages = nn.ModuleList(Stage(c, i, o, 1 if n == 0 else 2, d)
                                    for n, (i, o, d) in enumerate(zip(ins, c.hidden_sizes, c.depths)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


class ConvNextModel(nn.Module):
    def __init__(self, c: ConvNextConfig):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.layernorm = nn.LayerNorm(c.hidden_sizes[-1], eps=c.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> VisionOutput:
        hidden = self.encoder(self.embeddings(pixel_values.to(self.layernorm.weight.dtype)))  # (B, C, H, W)
        return VisionOutput(hidden, self.layernorm(hidden.mean((-2, -1))))


def build(c: ConvNextConfig, head: str) -> nn.Module:
    if head == "base":
        return ConvNextModel(c)
    return ImageClassificationModel(ConvNextModel(c), "convnext",
                                    {"classifier": (Linear(c.hidden_sizes[-1], c.num_labels), "pooler")})


FAMILY = Family("convnext", ConvNextConfig, ("base", "image-classification"), build, lambda c, head: WeightMap(),
                lambda c: "convnext", input_names=VISION_INPUTS, max_tokens=lambda c: None)
