"""Mechanisms the vision families share: patch embedding, the class/distillation-token embeddings with
(interpolated) position embeddings, the pre-norm ViT block, channels-first LayerNorm, and the output every
vision backbone returns. Attention, activations and linears come from `layers.py`."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import FastLinear as Linear
from .layers import MLP, Attention, activation


class VisionOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (B, T, C) for transformers, (B, C, H, W) for convnets
    pooler_output: torch.Tensor | None  # (B, C) or (B, C, 1, 1); None where the model has no pooler


class PatchEmbeddings(nn.Module):
    """(B, 3, H, W) → (B, H/p * W/p, C) by a stride-p convolution (ViT's `patch_embeddings.projection`)."""

    def __init__(self, num_channels: int, hidden_size: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(num_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.projection(pixel_values))

    @staticmethod
    def flatten(grid: torch.Tensor) -> torch.Tensor:
        return grid.flatten(2).transpose(1, 2)  # (B, C, h, w) → (B, h*w, C)


def interpolate_positions(table: torch.Tensor, extra_tokens: int, grid_h: int, grid_w: int, mode: str = "bicubic",
                          align_corners: bool = False) -> torch.Tensor:
    """(1, extra + N, C) position table → (1, extra + grid_h*grid_w, C): the patch part resized on its square
    grid (transformers' interpolate_pos_encoding: bicubic; DPT's _resize_pos_embed: bilinear; ViLT's: bilinear
    with corners aligned)."""
    extra, patches = table[:, :extra_tokens], table[:, extra_tokens:]
    side, dim = int(patches.shape[1] ** 0.5), patches.shape[-1]
    grid = patches.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(grid_h, grid_w), mode=mode, align_corners=align_corners).to(table.dtype)
    return torch.cat((extra, grid.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)


class TokenEmbeddings(nn.Module):
    """Patches with a class token (and DeiT's distillation token) in front, plus position embeddings.

    `interpolate`: resize the position grid to any input (DINOv2 always does, bicubically; DPT bilinearly, as
    `position_mode` says); otherwise the input must have the configured image size, as transformers requires.
    """

    def __init__(self, num_channels: int, hidden_size: int, patch_size: int, image_size: int,
                 distillation: bool = False, mask_token: bool = False, interpolate: bool = False,
                 position_mode: str = "bicubic"):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, hidden_size)) if distillation else None
        self.mask_token = nn.Parameter(torch.zeros(1, hidden_size)) if mask_token else None  # unused at inference
        self.patch_embeddings = PatchEmbeddings(num_channels, hidden_size, patch_size)
        self.extra_tokens = 2 if distillation else 1
        self.image_size, self.interpolate, self.position_mode = image_size, interpolate, position_mode
        grid = image_size // patch_size
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + self.extra_tokens, hidden_size))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        B, _, H, W = pixel_values.shape
        p = self.patch_embeddings.patch_size
        if not self.interpolate and (H, W) != (self.image_size, self.image_size):
            raise ValueError(f"Input image size ({H}*{W}) doesn't match model ({self.image_size}*{self.image_size}).")
        x = self.patch_embeddings(pixel_values.to(self.position_embeddings.dtype))  # (B, N, C)
        tokens = [self.cls_token.expand(B, -1, -1)]
        if self.distillation_token is not None:
            tokens.append(self.distillation_token.expand(B, -1, -1))
        x = torch.cat((*tokens, x), dim=1)
        positions = self.position_embeddings
        if x.shape[1] != positions.shape[1] or H != W:
            positions = interpolate_positions(positions, self.extra_tokens, H // p, W // p, self.position_mode)
        return x + positions


class Dense(nn.Module):
    """A linear layer under the name `dense` (ViT's `attention.output.dense`, `output.dense`)."""

    def __init__(self, in_size: int, out_size: int):
        super().__init__()
        self.dense = Linear(in_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)


class AttentionWithOutput(nn.Module):
    """ViT's `attention`: `attention` (q/k/v self-attention, or one fused `qkv` with `fused`: BLIP) then
    `output.dense`."""

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool = True, fused: bool = False):
        super().__init__()
        names = ("qkv", None) if fused else ("query", "key", "value", None)
        self.attention = Attention(hidden_size, num_heads, bias=qkv_bias, names=names, fused=fused)
        self.output = Dense(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.output(self.attention(x, mask))


class LayerScale(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.lambda1


class PreNormBlock(nn.Module):
    """x + attn(LN(x)), then x + MLP(LN(x)): the ViT block (names as ViT's checkpoints; DINOv2 adds layer
    scales and maps its norm1/norm2/mlp.fc1/mlp.fc2 onto these; BLIP fuses q/k/v: `fused_qkv`).

    attention: replaces ViT's global self-attention (Swin's shifted windows, SegFormer's reduced keys);
    mlp: replaces the intermediate/output feed-forward (SegFormer's Mix-FFN). Extra forward arguments (the
    token grid's size) are passed on to both.
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, act: str, eps: float,
                 qkv_bias: bool = True, layer_scale: bool = False, fused_qkv: bool = False,
                 attention: nn.Module | None = None, mlp: nn.Module | None = None):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=eps)
        self.attention = attention if attention is not None else \
            AttentionWithOutput(hidden_size, num_heads, qkv_bias, fused_qkv)
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = mlp
        if mlp is None:
            self.intermediate = MLP(hidden_size, intermediate_size, act, names=("dense", None))
            self.output = Dense(intermediate_size, hidden_size)
        self.layer_scale1 = LayerScale(hidden_size) if layer_scale else None
        self.layer_scale2 = LayerScale(hidden_size) if layer_scale else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *extra) -> torch.Tensor:
        a = self.attention(self.layernorm_before(x), mask, *extra)
        x = x + (self.layer_scale1(a) if self.layer_scale1 is not None else a)
        h = self.layernorm_after(x)
        m = self.output(self.intermediate(h)) if self.mlp is None else self.mlp(h, *extra)
        return x + (self.layer_scale2(m) if self.layer_scale2 is not None else m)


class PreNormEncoder(nn.Module):
    def __init__(self, num_layers: int, *block_args, **block_kwargs):
        super().__init__()
        self.layer = nn.ModuleList(PreNormBlock(*block_args, **block_kwargs) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)  # mask: additive (B, 1, T|1, T) or None
        return x

    def collect(self, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
        """The outputs of the layers numbered in `layers` (0-based, in that order), each (B, T, C); layers past
        the last one asked for are not run (DPT's and Depth Anything's intermediate features)."""
        outputs = {}
        for i, layer in enumerate(self.layer[: max(layers) + 1]):
            x = layer(x)
            outputs[i] = x
        return [outputs[i] for i in layers]


class Pooler(nn.Module):
    """First token → dense → activation (ViT's / DeiT's `pooler`)."""

    def __init__(self, hidden_size: int, out_size: int, act: str = "tanh"):
        super().__init__()
        self.dense = Linear(hidden_size, out_size)
        self.act = activation(act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden[:, 0]))


class Activation(nn.Module):
    """An activation by name as a module, for checkpoints that keep one inside an nn.Sequential."""

    def __init__(self, name: str):
        super().__init__()
        self.fn = activation(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of (B, C, H, W) (ConvNeXt's channels_first LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


VISION_INPUTS = ("pixel_values",)

# CLIP-style checkpoints (CLIP, SigLIP, OWL-ViT) name the pre-norm block's parts differently.
_LAYER = r"(encoder\.)layers\.(\d+)\."
CLIP_BLOCK_RENAMES = [(_LAYER + r"self_attn\.q_proj\.", r"\1layer.\2.attention.attention.query."),
                      (_LAYER + r"self_attn\.k_proj\.", r"\1layer.\2.attention.attention.key."),
                      (_LAYER + r"self_attn\.v_proj\.", r"\1layer.\2.attention.attention.value."),
                      (_LAYER + r"self_attn\.out_proj\.", r"\1layer.\2.attention.output.dense."),
                      (_LAYER + r"layer_norm1\.", r"\1layer.\2.layernorm_before."),
                      (_LAYER + r"layer_norm2\.", r"\1layer.\2.layernorm_after."),
                      (_LAYER + r"mlp\.fc1\.", r"\1layer.\2.intermediate.dense."),
                      (_LAYER + r"mlp\.fc2\.", r"\1layer.\2.output.dense.")]


class MLPPredictionHead(nn.Module):
    """`layers.0..n-1` linears with ReLU between (DETR's and YOLOS's class and box heads)."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int, num_layers: int):
        super().__init__()
        sizes = [in_size] + [hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(Linear(a, b) for a, b in zip(sizes, sizes[1:] + [out_size]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class Detections(NamedTuple):
    logits: torch.Tensor  # (B, Q, num_labels + 1): the last class is "no object"
    pred_boxes: torch.Tensor  # (B, Q, 4) as (cx, cy, w, h) relative to the image


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and no `num_batches_tracked` (DETR's backbone norm), eps 1e-5."""

    eps = 1e-5

    def __init__(self, size: int):
        super().__init__()
        for name in ("weight", "bias", "running_mean", "running_var"):
            self.register_buffer(name, torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]
