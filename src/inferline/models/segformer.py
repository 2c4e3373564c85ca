"""SegFormer (transformers 4.57.6 SegformerForSemanticSegmentation): a Mix Transformer encoder of four
stages — overlapping strided-conv patch embeddings, pre-norm blocks whose keys/values come from a
sequence reduced by a strided conv, and a Mix-FFN with a depthwise 3x3 conv — then the all-MLP decode
head: each stage projected, upsampled to the first stage's grid, fused by a 1x1 conv + BatchNorm + ReLU,
classified per pixel. Logits come out at 1/4 of the input's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .kernels import FastLinear as Linear
from .layers import Attention, activation
from .registry import Family
from .vision import VISION_INPUTS, Dense, PreNormBlock
from .weights import WeightMap


@dataclass
class SegformerConfig(ModelConfig):
    num_channels: int = 3
    num_encoder_blocks: int = 4
    depths: list = field(default_factory=lambda: [2, 2, 2, 2])
    sr_ratios: list = field(default_factory=lambda: [8, 4, 2, 1])
    hidden_sizes: list = field(default_factory=lambda: [32, 64, 160, 256])
    patch_sizes: list = field(default_factory=lambda: [7, 3, 3, 3])
    strides: list = field(default_factory=lambda: [4, 2, 2, 2])
    num_attention_heads: list = field(default_factory=lambda: [1, 2, 5, 8])
    mlp_ratios: list = field(default_factory=lambda: [4, 4, 4, 4])
    hidden_act: str = "gelu"
    decoder_hidden_size: int = 256
    reshape_last_stage: bool = True


class SemanticLogits(NamedTuple):
    logits: torch.Tensor  # (B, num_labels, H/4, W/4)


def _grid(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, h*w, C) → (B, C, h, w)"""
    return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)


class EfficientAttention(nn.Module):
    """Self-attention whose keys/values come from the sequence reduced `sr_ratio` times per side by a strided
    conv and a LayerNorm (the shared attention's cross-attention `source`)."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        self.self = Attention(dim, num_heads, names=("query", "key", "value", None))
        self.output = Dense(dim, dim)
        self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio) if sr_ratio > 1 else None
        self.layer_norm = nn.LayerNorm(dim) if sr_ratio > 1 else None

    def forward(self, x: torch.Tensor, mask: None, grid: tuple[int, int]) -> torch.Tensor:
        source = x
        if self.sr is not None:
            source = self.layer_norm(self.sr(_grid(x, grid)).flatten(2).transpose(1, 2))  # (B, h*w/r², C)
        return self.output(self.self(x, source=source))


class MixFFN(nn.Module):
    """dense1 → depthwise 3x3 conv over the token grid → activation → dense2."""

    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.dense1 = Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = activation(act)
        self.dense2 = Linear(hidden, dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        h = self.dwconv(_grid(self.dense1(x), grid)).flatten(2).transpose(1, 2)
        return self.dense2(self.act(h))


class OverlapPatchEmbeddings(nn.Module):
    def __init__(self, patch: int, stride: int, in_ch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride=stride, padding=patch // 2)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        return self.layer_norm(x.flatten(2).transpose(1, 2)), tuple(x.shape[-2:])  # (B, h*w, C)


class Encoder(nn.Module):
    def __init__(self, c: SegformerConfig):
        super().__init__()
        n, sizes = c.num_encoder_blocks, c.hidden_sizes
        self.patch_embeddings = nn.ModuleList(
            OverlapPatchEmbeddings(c.patch_sizes[i], c.strides[i], c.num_channels if i == 0 else sizes[i - 1], sizes[i])
            for i in range(n))
        self.block = nn.ModuleList(nn.ModuleList(
            PreNormBlock(sizes[i], c.num_attention_heads[i], 0, c.hidden_act, 1e-5,
                         attention=EfficientAttention(sizes[i], c.num_attention_heads[i], c.sr_ratios[i]),
                         mlp=MixFFN(sizes[i], int(sizes[i] * c.mlp_ratios[i]), c.hidden_act))
            for _ in range(c.depths[i])) for i in range(n))
        self.layer_norm = nn.ModuleList(nn.LayerNorm(sizes[i]) for i in range(n))

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """→ each stage's output, (B, C_i, h_i, w_i)."""
        stages, x = [], pixel_values
        for embed, blocks, norm in zip(self.patch_embeddings, self.block, self.layer_norm):
            x, grid = embed(x)
            for block in blocks:
                x = block(x, None, grid)
            x = _grid(norm(x), grid)
            stages.append(x)
        return stages


class SegformerModel(nn.Module):
    def __init__(self, c: SegformerConfig):
        super().__init__()
        if not c.reshape_last_stage:
            raise ValueError("SegFormer checkpoints with reshape_last_stage=False are not supported.")
        self.encoder = Encoder(c)

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(pixel_values.to(self.encoder.layer_norm[0].weight.dtype))


class ProjectTokens(nn.Module):
    """(B, C, h, w) → (B, h*w, D) through `proj` (the decode head's per-stage MLP)."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.proj = Linear(dim, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(2).transpose(1, 2))


class DecodeHead(nn.Module):
    def __init__(self, c: SegformerConfig):
        super().__init__()
        D, n = c.decoder_hidden_size, c.num_encoder_blocks
        self.linear_c = nn.ModuleList(ProjectTokens(c.hidden_sizes[i], D) for i in range(n))
        self.linear_fuse = nn.Conv2d(D * n, D, 1, bias=False)
        self.batch_norm = nn.BatchNorm2d(D)
        self.classifier = nn.Conv2d(D, c.num_labels, 1)

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        size = stages[0].shape[-2:]
        up = [F.interpolate(_grid(mlp(x), x.shape[-2:]), size=size, mode="bilinear", align_corners=False)
              for x, mlp in zip(stages, self.linear_c)]
        fused = F.relu(self.batch_norm(self.linear_fuse(torch.cat(up[::-1], dim=1))))
        return self.classifier(fused)  # (B, num_labels, h_0, w_0)


class SegformerForSemanticSegmentation(nn.Module):
    segmentation_subtasks = ("semantic",)

    def __init__(self, c: SegformerConfig):
        super().__init__()
        self.segformer = SegformerModel(c)
        self.decode_head = DecodeHead(c)

    def forward(self, pixel_values: torch.Tensor) -> SemanticLogits:
        return SemanticLogits(self.decode_head(self.segformer(pixel_values)))


# transformers keeps the reduction conv and its norm inside `attention.self` (ours sit beside it) and nests
# the depthwise conv in a module of its own.
_BLOCK = r"(block\.\d+\.\d+\.)"
WEIGHTS = WeightMap(renames=[(_BLOCK + r"layer_norm_1\.", r"\1layernorm_before."),
                             (_BLOCK + r"layer_norm_2\.", r"\1layernorm_after."),
                             (_BLOCK + r"attention\.self\.(sr|layer_norm)\.", r"\1attention.\2."),
                             (r"mlp\.dwconv\.dwconv\.", "mlp.dwconv.")])

FAMILY = Family("segformer", SegformerConfig, ("semantic-segmentation",),
                lambda c, head: SegformerForSemanticSegmentation(c), lambda c, head: WEIGHTS, lambda c: "segformer",
                input_names=VISION_INPUTS, max_tokens=lambda c: None)
