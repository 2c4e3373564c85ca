"""ResNet (transformers 4.57.6 ResNetModel / ResNetForImageClassification): a conv-BN-ReLU stem with
max-pool, stages of bottleneck (or basic) residual layers, global average pooling.

Inference uses BatchNorm's running statistics; the counters `num_batches_tracked` load but are unused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .config import ModelConfig
from .heads import ImageClassificationModel
from .kernels import FastLinear as Linear
from .kernels import conv2d
from .layers import activation
from .registry import Family
from .vision import VISION_INPUTS, VisionOutput
from .weights import WeightMap


@dataclass
class ResNetConfig(ModelConfig):
    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: list = field(default_factory=lambda: [256, 512, 1024, 2048])
    depths: list = field(default_factory=lambda: [3, 4, 6, 3])
    layer_type: str = "bottleneck"
    hidden_act: str = "relu"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False


class ConvLayer(nn.Module):
    """convolution (no bias) → BatchNorm → [+ a residual] → activation.

    `fold_norm()` (called once at load by kernels.prepare_convolutions) folds the fixed inference-time BatchNorm
    into a derived weight and bias, kept as non-persistent buffers: the checkpoint's tensors stay untouched
    (saving writes them back as read), and the convolution, the residual add and a ReLU run as one call."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, act: str | None = "relu",
                 norm=nn.BatchNorm2d):
        super().__init__()
        self.convolution = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.normalization = norm(out_ch)
        self.act = activation(act) if act else None
        self.act_name = act
        self.register_buffer("fused_weight", None, persistent=False)
        self.register_buffer("fused_bias", None, persistent=False)

    def fold_norm(self) -> None:
        norm = self.normalization
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()  # as BatchNorm computes it, in its dtype
        self.fused_weight = self.convolution.weight * scale[:, None, None, None]
        self.fused_bias = norm.bias - norm.running_mean * scale

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.fused_weight is None:  # a module built outside load_model: the plain path
            x = self.normalization(self.convolution(x))
        elif self.act_name in ("relu", None):
            return conv2d(x, self.convolution, self.fused_weight, self.fused_bias, self.act_name == "relu", residual)
        else:
            x = conv2d(x, self.convolution, self.fused_weight, self.fused_bias)
        x = x if residual is None else x + residual
        return self.act(x) if self.act is not None else x


class ResidualLayer(nn.Module):
    """act(layer(x) + shortcut(x)); `layer` is 1x1-3x3-1x1 (bottleneck, /4 channels inside) or 3x3-3x3 (basic);
    its last ConvLayer adds the shortcut before its activation. The shortcut is a ConvLayer without one."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, act: str, bottleneck: bool, downsample_first: bool,
                 norm=nn.BatchNorm2d):
        super().__init__()
        needs_shortcut = in_ch != out_ch or stride != 1
        self.shortcut = ConvLayer(in_ch, out_ch, 1, stride, None, norm) if needs_shortcut else nn.Identity()
        if bottleneck:
            mid = out_ch // 4
            self.layer = nn.Sequential(ConvLayer(in_ch, mid, 1, stride if downsample_first else 1, act, norm),
                                       ConvLayer(mid, mid, 3, 1 if downsample_first else stride, act, norm),
                                       ConvLayer(mid, out_ch, 1, 1, act, norm))
        else:
            self.layer = nn.Sequential(ConvLayer(in_ch, out_ch, 3, stride, act, norm),
                                       ConvLayer(out_ch, out_ch, 3, 1, act, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.layer[:-1]:
            h = conv(h)
        return self.layer[-1](h, self.shortcut(x))


class Stage(nn.Module):
    def __init__(self, c: ResNetConfig, in_ch: int, out_ch: int, stride: int, depth: int, norm=nn.BatchNorm2d):
        super().__init__()
        bottleneck = c.layer_type == "bottleneck"
        self.layers = nn.Sequential(*[
            ResidualLayer(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, c.hidden_act, bottleneck,
                          c.downsample_in_bottleneck, norm) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Embedder(nn.Module):
    def __init__(self, c: ResNetConfig, norm=nn.BatchNorm2d):
        super().__init__()
        self.embedder = ConvLayer(c.num_channels, c.embedding_size, 7, 2, c.hidden_act, norm)
        self.pooler = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooler(self.embedder(x))


class Encoder(nn.Module):
    def __init__(self, c: ResNetConfig, norm=nn.BatchNorm2d):
        super().__init__()
        ins = [c.embedding_size, *c.hidden_sizes[:-1]]
        strides = [2 if c.downsample_in_first_stage else 1] + [2] * (len(c.depths) - 1)
        self.stages = nn.ModuleList(Stage(c, i, o, s, d, norm)
                                    for i, o, s, d in zip(ins, c.hidden_sizes, strides, c.depths))


class ResNetModel(nn.Module):
    """`norm`: BatchNorm2d, or vision.FrozenBatchNorm2d where a backbone's checkpoint stores no counters (DETR)."""

    def __init__(self, c: ResNetConfig, norm=nn.BatchNorm2d):
        super().__init__()
        self.embedder = Embedder(c, norm)
        self.encoder = Encoder(c, norm)

    def stages(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, (B, C_i, H_i, W_i): the feature maps a backbone gives (DETR's mask head)."""
        x = self.embedder(pixel_values.to(self.embedder.embedder.convolution.weight.dtype))
        out = []
        for stage in self.encoder.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, pixel_values: torch.Tensor) -> VisionOutput:
        hidden = self.stages(pixel_values)[-1]
        return VisionOutput(hidden, hidden.mean((2, 3), keepdim=True))  # (B, C, H, W), (B, C, 1, 1)


def build(c: ResNetConfig, head: str) -> nn.Module:
    if head == "base":
        return ResNetModel(c)
    classifier = nn.Sequential(nn.Flatten(), Linear(c.hidden_sizes[-1], c.num_labels))
    return ImageClassificationModel(ResNetModel(c), "resnet", {"classifier": (classifier, "pooler")})


FAMILY = Family("resnet", ResNetConfig, ("base", "image-classification"), build, lambda c, head: WeightMap(),
                lambda c: "resnet", input_names=VISION_INPUTS, max_tokens=lambda c: None)
