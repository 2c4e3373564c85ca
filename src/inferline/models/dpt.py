"""DPT (transformers 4.57.6 DPTForDepthEstimation): a ViT whose intermediate layers are reassembled into
image-like maps at four scales, fused coarse to fine by residual conv units, and read out by a conv head.

The neck (reassemble + fusion) and the `DepthModel` wiring are shared with Depth Anything
(`depth_anything.py`), which differs as data: a DINOv2 backbone, no readout token, fusion that upsamples
to the next map's size, and its own head. Like transformers' DPT, the ViT variant needs a square patch grid
(its reassemble stage reshapes the tokens to sqrt(N) x sqrt(N)); a non-square one is a clear error here.
DPT-hybrid (a BiT backbone) and DPT over other backbones are refused for now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import FastLinear as Linear
from .registry import Family
from .vision import VISION_INPUTS, Activation, PreNormEncoder, TokenEmbeddings
from .vit import ViTConfig
from .weights import WeightMap


@dataclass
class DPTConfig(ViTConfig):
    image_size: int = 384
    is_hybrid: bool = False
    backbone_config: dict | None = None
    backbone: str | None = None
    backbone_out_indices: list = field(default_factory=lambda: [2, 5, 8, 11])
    readout_type: str = "project"
    reassemble_factors: list = field(default_factory=lambda: [4, 2, 1, 0.5])
    neck_hidden_sizes: list = field(default_factory=lambda: [96, 192, 384, 768])
    fusion_hidden_size: int = 256
    head_in_index: int = -1
    use_batch_norm_in_fusion_residual: bool = False
    use_bias_in_fusion_residual: bool | None = None
    add_projection: bool = False


# ----- the neck, shared with Depth Anything -----
class ReassembleLayer(nn.Module):
    """1x1 projection to `channels`, then resize by `factor`: transposed conv up, identity, or strided conv down."""

    def __init__(self, in_size: int, channels: int, factor: float):
        super().__init__()
        self.projection = nn.Conv2d(in_size, channels, kernel_size=1)
        if factor > 1:
            self.resize = nn.ConvTranspose2d(channels, channels, kernel_size=int(factor), stride=int(factor))
        elif factor == 1:
            self.resize = nn.Identity()
        else:
            self.resize = nn.Conv2d(channels, channels, kernel_size=3, stride=int(1 / factor), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.projection(x))


class ReassembleStage(nn.Module):
    """Tokens (B, 1 + h*w, C) of several layers → maps (B, C_i, H_i, W_i); the class token is dropped
    ("ignore"), added to every patch ("add") or concatenated and projected ("project")."""

    def __init__(self, in_size: int, sizes: list[int], factors: list[float], readout: str = "ignore",
                 act: str = "gelu"):
        super().__init__()
        if readout not in ("ignore", "add", "project"):
            raise ValueError(f"DPT readout_type must be 'ignore', 'add' or 'project'; got {readout!r}.")
        self.readout = readout
        self.layers = nn.ModuleList(ReassembleLayer(in_size, c, f) for c, f in zip(sizes, factors))
        if readout == "project":
            self.readout_projects = nn.ModuleList(nn.Sequential(Linear(2 * in_size, in_size), Activation(act))
                                                  for _ in sizes)

    def forward(self, states: list[torch.Tensor], h: int, w: int) -> list[torch.Tensor]:
        out = []
        for i, state in enumerate(states):
            cls, x = state[:, :1], state[:, 1:]  # (B, 1, C), (B, h*w, C)
            if self.readout == "project":
                x = self.readout_projects[i](torch.cat((x, cls.expand_as(x)), -1))
            elif self.readout == "add":
                x = x + cls
            x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)  # (B, C, h, w)
            out.append(self.layers[i](x))
        return out


class ResidualUnit(nn.Module):
    """ReLU → conv3x3 [→ BN] → ReLU → conv3x3 [→ BN], plus the input (a pre-activation residual conv unit)."""

    def __init__(self, size: int, batch_norm: bool = False, bias: bool = True):
        super().__init__()
        self.convolution1 = nn.Conv2d(size, size, kernel_size=3, padding=1, bias=bias)
        self.convolution2 = nn.Conv2d(size, size, kernel_size=3, padding=1, bias=bias)
        self.batch_norm1 = nn.BatchNorm2d(size) if batch_norm else None
        self.batch_norm2 = nn.BatchNorm2d(size) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convolution1(F.relu(x))
        y = self.batch_norm1(y) if self.batch_norm1 is not None else y
        y = self.convolution2(F.relu(y))
        y = self.batch_norm2(y) if self.batch_norm2 is not None else y
        return y + x


class FusionLayer(nn.Module):
    def __init__(self, size: int, batch_norm: bool = False, bias: bool = True):
        super().__init__()
        self.projection = nn.Conv2d(size, size, kernel_size=1)
        self.residual_layer1 = ResidualUnit(size, batch_norm, bias)
        self.residual_layer2 = ResidualUnit(size, batch_norm, bias)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            if skip.shape != x.shape:
                skip = F.interpolate(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = x + self.residual_layer1(skip)
        x = self.residual_layer2(x)
        resize = {"scale_factor": 2} if size is None else {"size": size}
        return self.projection(F.interpolate(x, **resize, mode="bilinear", align_corners=True))


class FusionStage(nn.Module):
    """Coarsest map first; each layer adds the next finer map and upsamples (×2, or to the next map's size
    when `to_next_size`, as Depth Anything does)."""

    def __init__(self, count: int, size: int, batch_norm: bool = False, bias: bool = True,
                 to_next_size: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(FusionLayer(size, batch_norm, bias) for _ in range(count))
        self.to_next_size = to_next_size

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        features = features[::-1]
        fused, x = [], None
        for i, (feature, layer) in enumerate(zip(features, self.layers)):
            size = features[i + 1].shape[2:] if self.to_next_size and i + 1 < len(features) else None
            x = layer(feature, size=size) if x is None else layer(x, feature, size=size)
            fused.append(x)
        return fused


class Neck(nn.Module):
    def __init__(self, in_size: int, sizes: list[int], factors: list[float], fusion_size: int, readout: str,
                 act: str = "gelu", batch_norm: bool = False, bias: bool = True, to_next_size: bool = False):
        super().__init__()
        self.reassemble_stage = ReassembleStage(in_size, sizes, factors, readout, act)
        self.convs = nn.ModuleList(nn.Conv2d(c, fusion_size, kernel_size=3, padding=1, bias=False) for c in sizes)
        self.fusion_stage = FusionStage(len(sizes), fusion_size, batch_norm, bias, to_next_size)

    def forward(self, states: list[torch.Tensor], h: int, w: int) -> list[torch.Tensor]:
        maps = self.reassemble_stage(states, h, w)
        return self.fusion_stage([conv(m) for conv, m in zip(self.convs, maps)])


class DepthModel(nn.Module):
    """backbone tokens of chosen layers → neck → head → (B, H', W') depth. `backbone` is registered under the
    checkpoint's name (`dpt`, `backbone`) and offers `tokens(pixel_values) -> list of (B, 1 + h*w, C)`."""

    def __init__(self, backbone_name: str, backbone: nn.Module, neck: Neck, head: nn.Module, patch_size: int,
                 square_grid: bool):
        super().__init__()
        self.backbone_name = backbone_name
        self.add_module(backbone_name, backbone)
        self.neck, self.depth_head = neck, head  # the checkpoint's `head`; registry's model.head names the kind
        self.patch_size, self.square_grid = patch_size, square_grid

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h, w = pixel_values.shape[2] // self.patch_size, pixel_values.shape[3] // self.patch_size
        if self.square_grid and h != w:
            raise ValueError(f"DPT needs a square patch grid: these pixel values are {pixel_values.shape[2]}x"
                             f"{pixel_values.shape[3]}, {h}x{w} patches of {self.patch_size} (transformers' DPT "
                             f"fails on them too). Process images to a square size (keep_aspect_ratio=False).")
        states = getattr(self, self.backbone_name).tokens(pixel_values)
        return self.depth_head(self.neck(states, h, w), h, w)  # (B, H', W')


# ----- DPT's own parts -----
class DPTViT(nn.Module):
    def __init__(self, c: DPTConfig):
        super().__init__()
        self.embeddings = TokenEmbeddings(c.num_channels, c.hidden_size, c.patch_size, c.image_size,
                                          interpolate=True, position_mode="bilinear")
        self.encoder = PreNormEncoder(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size,
                                      c.hidden_act, c.layer_norm_eps, c.qkv_bias)
        self.out_indices = sorted(c.backbone_out_indices)  # transformers reads them in layer order

    def tokens(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder.collect(self.embeddings(pixel_values), self.out_indices)  # before the final LayerNorm


class DPTHead(nn.Module):
    """[conv3x3 + ReLU] → conv3x3 (C/2) → upsample ×2 → conv3x3 (32) → ReLU → conv1x1 (1) → ReLU."""

    def __init__(self, c: DPTConfig):
        super().__init__()
        C = c.fusion_hidden_size
        self.index = c.head_in_index
        self.projection = nn.Conv2d(256, 256, kernel_size=3, padding=1) if c.add_projection else None
        self.head = nn.Sequential(nn.Conv2d(C, C // 2, kernel_size=3, padding=1),
                                  nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                  nn.Conv2d(C // 2, 32, kernel_size=3, padding=1), nn.ReLU(),
                                  nn.Conv2d(32, 1, kernel_size=1), nn.ReLU())

    def forward(self, features: list[torch.Tensor], h: int, w: int) -> torch.Tensor:
        x = features[self.index]
        if self.projection is not None:
            x = F.relu(self.projection(x))
        return self.head(x).squeeze(1)


def build(c: DPTConfig, head: str) -> nn.Module:
    if c.is_hybrid or c.backbone_config is not None or c.backbone is not None:
        raise ValueError("DPT checkpoints with a separate backbone (DPT-hybrid's BiT, or backbone_config) are not "
                         "supported yet; the ViT DPT (Intel/dpt-large) is.")
    bias = c.use_bias_in_fusion_residual if c.use_bias_in_fusion_residual is not None \
        else not c.use_batch_norm_in_fusion_residual
    neck = Neck(c.hidden_size, c.neck_hidden_sizes, c.reassemble_factors, c.fusion_hidden_size, c.readout_type,
                c.hidden_act, c.use_batch_norm_in_fusion_residual, bias)
    return DepthModel("dpt", DPTViT(c), neck, DPTHead(c), c.patch_size, square_grid=True)


HEAD_RENAMES = [(r"^head\.", "depth_head.")]
# The ViT's final LayerNorm (and, in older conversions, a pooler) are stored; DPT reads the layers before them.
WEIGHTS = WeightMap(renames=HEAD_RENAMES, unused=[r"^dpt\.layernorm\.", r"^dpt\.pooler\."])

FAMILY = Family("dpt", DPTConfig, ("depth-estimation",), build, lambda c, head: WEIGHTS, lambda c: "",
                input_names=VISION_INPUTS, max_tokens=lambda c: None)
