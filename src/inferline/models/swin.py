"""Swin Transformer (transformers 4.57.6 SwinModel / SwinForImageClassification).

Patches (with a LayerNorm), then stages of ViT pre-norm blocks whose self-attention runs inside local
windows with a learnt relative position bias, every second block on windows shifted by half a window
(a mask keeps the wrapped-around regions apart); patch merging (2x2 → 1, channels doubled) between
stages; a final LayerNorm and mean pooling. Any input size works: the grid is padded to whole patches
and windows, as transformers pads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .heads import ImageClassificationModel
from .kernels import FastLinear as Linear
from .layers import Attention
from .registry import Family
from .vision import VISION_INPUTS, Dense, PatchEmbeddings, PreNormBlock, VisionOutput
from .weights import WeightMap


@dataclass
class SwinConfig(ModelConfig):
    image_size: int = 224
    patch_size: int = 4
    num_channels: int = 3
    embed_dim: int = 96
    depths: list = field(default_factory=lambda: [2, 2, 6, 2])
    num_heads: list = field(default_factory=lambda: [3, 6, 12, 24])
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    hidden_act: str = "gelu"
    use_absolute_embeddings: bool = False
    layer_norm_eps: float = 1e-5

    @property
    def num_features(self) -> int:
        return int(self.embed_dim * 2 ** (len(self.depths) - 1))


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) → (B * H/w * W/w, w*w, C), windows in row-major order per image."""
    B, H, W, C = x.shape
    x = x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, C)


def _unwindow(x: torch.Tensor, w: int, B: int, H: int, W: int) -> torch.Tensor:
    """(B * H/w * W/w, w*w, C) → (B, H, W, C)"""
    x = x.view(B, H // w, W // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, -1)


def _shift_mask(H: int, W: int, w: int, shift: int, device) -> torch.Tensor:
    """(nW, w*w, w*w) bool: True where two tokens of a shifted window came from different regions."""
    region = torch.zeros(1, H, W, 1, device=device)
    count = 0
    for hs in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
        for ws in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
            region[:, hs, ws] = count
            count += 1
    region = _windows(region, w)[..., 0]  # (nW, w*w)
    return region[:, None, :] != region[:, :, None]


class ShiftedWindowAttention(nn.Module):
    """Self-attention within (shifted) windows, plus the relative position bias: Swin's `attention`.

    `self` is the shared q/k/v attention; the bias (and the shift mask, -100 where regions differ, as
    transformers adds it) go to SDPA as one additive mask.
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, qkv_bias: bool):
        super().__init__()
        self.window, self.shift, self.num_heads = window, shift, num_heads
        self.self = Attention(dim, num_heads, bias=qkv_bias, names=("query", "key", "value", None))
        self.output = Dense(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", torch.zeros(window * window, window * window,
                                                                     dtype=torch.long))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, grid: tuple[int, int]) -> torch.Tensor:
        H, W = grid
        B, _, C = x.shape
        w, shift = self.window, self.shift
        if min(H, W) <= w:  # the whole grid fits one window: no shift (transformers' set_shift_and_window_size)
            if min(H, W) < w:
                raise ValueError(f"Swin: a {H}x{W} token grid is smaller than the {w}x{w} window; transformers "
                                 f"cannot run it either (its position bias is sized for whole windows).")
            shift = 0
        x = x.view(B, H, W, C)
        pad_h, pad_w = (w - H % w) % w, (w - W % w) % w
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # zeros after the norm, as transformers pads
        Hp, Wp = H + pad_h, W + pad_w
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = _windows(x, w)  # (B*nW, N, C)
        N = w * w
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(N, N, -1).permute(2, 0, 1)[None].to(x.dtype)  # (1, heads, N, N)
        if shift:
            blocked = _shift_mask(Hp, Wp, w, shift, x.device)  # (nW, N, N)
            bias = bias + blocked[:, None].to(x.dtype) * -100.0  # (nW, heads, N, N)
            nW = blocked.shape[0]
            bias = bias[None].expand(B, nW, -1, N, N).reshape(B * nW, -1, N, N)
        out = self.output(self.self(windows, bias))  # (B*nW, N, C)
        out = _unwindow(out, w, B, Hp, Wp)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        return out[:, :H, :W].reshape(B, H * W, C)


class PatchMerging(nn.Module):
    """(B, H*W, C) → (B, ceil(H/2)*ceil(W/2), 2C): each 2x2 neighbourhood concatenated, normed, projected."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        H, W = grid
        B, _, C = x.shape
        x = F.pad(x.view(B, H, W, C), (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.reshape(B, -1, 4 * C)))


class Stage(nn.Module):
    def __init__(self, c: SwinConfig, dim: int, depth: int, heads: int, downsample: bool):
        super().__init__()
        w = c.window_size
        self.blocks = nn.ModuleList(
            PreNormBlock(dim, heads, int(c.mlp_ratio * dim), c.hidden_act, c.layer_norm_eps,
                         attention=ShiftedWindowAttention(dim, heads, w, 0 if i % 2 == 0 else w // 2, c.qkv_bias))
            for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        for block in self.blocks:
            x = block(x, None, grid)
        if self.downsample is None:
            return x, grid
        return self.downsample(x, grid), ((grid[0] + 1) // 2, (grid[1] + 1) // 2)


class Embeddings(nn.Module):
    def __init__(self, c: SwinConfig):
        super().__init__()
        self.patch_embeddings = PatchEmbeddings(c.num_channels, c.embed_dim, c.patch_size)
        self.norm = nn.LayerNorm(c.embed_dim)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        p = self.patch_embeddings.patch_size
        H, W = pixel_values.shape[-2:]
        x = F.pad(pixel_values, (0, (p - W % p) % p, 0, (p - H % p) % p))  # whole patches, right/bottom
        grid = (x.shape[-2] // p, x.shape[-1] // p)
        return self.norm(self.patch_embeddings(x)), grid  # (B, h*w, C)


class Encoder(nn.Module):
    def __init__(self, c: SwinConfig):
        super().__init__()
        n = len(c.depths)
        self.layers = nn.ModuleList(Stage(c, int(c.embed_dim * 2 ** i), c.depths[i], c.num_heads[i], i < n - 1)
                                    for i in range(n))

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        for stage in self.layers:
            x, grid = stage(x, grid)
        return x


class SwinModel(nn.Module):
    def __init__(self, c: SwinConfig):
        super().__init__()
        if c.use_absolute_embeddings:  # transformers adds a (N + 1)-row table to N patches: it cannot run either
            raise ValueError("Swin checkpoints with use_absolute_embeddings=True are not supported.")
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.layernorm = nn.LayerNorm(c.num_features, eps=c.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> VisionOutput:
        x, grid = self.embeddings(pixel_values.to(self.layernorm.weight.dtype))
        hidden = self.layernorm(self.encoder(x, grid))  # (B, T, C)
        return VisionOutput(hidden, hidden.mean(1))


def build(c: SwinConfig, head: str) -> nn.Module:
    if head == "base":
        return SwinModel(c)
    return ImageClassificationModel(SwinModel(c), "swin",
                                    {"classifier": (Linear(c.num_features, c.num_labels), "pooler")})


# The checkpoint keeps the bias table and its index inside `attention.self`; ours sit beside it.
WEIGHTS = WeightMap(renames=[(r"attention\.self\.relative_position_", "attention.relative_position_")],
                    unused=[r"(^|\.)embeddings\.mask_token$"])

FAMILY = Family("swin", SwinConfig, ("base", "image-classification"), build, lambda c, head: WEIGHTS,
                lambda c: "swin", input_names=VISION_INPUTS, max_tokens=lambda c: None)
