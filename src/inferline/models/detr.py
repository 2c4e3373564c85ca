"""DETR (transformers 4.57.6 DetrModel / DetrForObjectDetection): a ResNet backbone with frozen BatchNorm,
a 1x1 projection, a post-norm transformer encoder over the feature map (sine positions added to queries
and keys), a decoder of learnt object queries, and class / box heads.

The backbone loads from either naming: transformers' ResNetBackbone (`embedder`, `encoder.stages`) or
timm's resnet (`conv1`, `bn1`, `layer1.0.conv1`, `downsample.0`, ...) that the default checkpoints
(facebook/detr-resnet-50, use_timm_backbone=True) store, with BatchNorm counters (`num_batches_tracked`)
known-unused.

DetrForSegmentation (facebook/detr-resnet-50-panoptic) adds the panoptic mask head: each query's attention
map over the encoder's features, refined with three backbone stages by a small conv FPN into mask logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .kernels import FastLinear
from .layers import Attention, activation, attention, merge_heads, split_heads
from .registry import Family
from .resnet import ResNetConfig, ResNetModel
from .vision import Detections, FrozenBatchNorm2d, MLPPredictionHead
from .weights import WeightMap

TIMM_RESNETS = {"resnet50": ([3, 4, 6, 3], "bottleneck"), "resnet101": ([3, 4, 23, 3], "bottleneck"),
                "resnet18": ([2, 2, 2, 2], "basic"), "resnet34": ([3, 4, 6, 3], "basic")}


@dataclass
class DetrConfig(ModelConfig):
    d_model: int = 256
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 8
    decoder_attention_heads: int = 8
    encoder_ffn_dim: int = 2048
    decoder_ffn_dim: int = 2048
    activation_function: str = "relu"
    num_queries: int = 100
    use_timm_backbone: bool = True
    backbone: str | None = "resnet50"
    backbone_config: dict | None = None
    dilation: bool = False
    position_embedding_type: str = "sine"
    num_channels: int = 3
    backbone_kwargs: dict | None = None

    def feature_stages(self) -> list[int]:
        """The backbone stages (0-based) DETR reads: transformers' backbone out_features / out_indices, or
        timm's out_indices (default 1-4: every stage); the last feeds the transformer, the rest the mask head."""
        n = len(self.resnet().depths)
        if self.backbone_config:
            names = self.backbone_config.get("out_features")
            indices = self.backbone_config.get("out_indices")
            given = names or indices
            stages = [int(name.removeprefix("stage")) - 1 if name.startswith("stage") else -1 for name in names] \
                if names else [i - 1 for i in indices] if indices else [n - 1]
        else:
            given = (self.backbone_kwargs or {}).get("out_indices", (1, 2, 3, 4))
            stages = [i - 1 for i in given]
        if any(i < 0 or i >= n for i in stages):
            raise ValueError(f"DETR backbone outputs {given!r} are not supported: only stages 1-{n} (not the stem).")
        return stages

    def resnet(self) -> ResNetConfig:
        if self.backbone_config:
            return ResNetConfig.from_hf(self.backbone_config)
        if self.backbone not in TIMM_RESNETS:
            raise ValueError(f"DETR backbone {self.backbone!r} is not supported; supported: {sorted(TIMM_RESNETS)}.")
        depths, kind = TIMM_RESNETS[self.backbone]
        sizes = [256, 512, 1024, 2048] if kind == "bottleneck" else [64, 128, 256, 512]
        return ResNetConfig(depths=depths, layer_type=kind, hidden_sizes=sizes, num_channels=self.num_channels)


class DetrFeatures(NamedTuple):
    decoded: torch.Tensor  # (B, Q, d): the decoder's output per object query
    memory: torch.Tensor  # (B, h*w, d): the encoder's output
    mask: torch.Tensor  # (B, h, w) bool: real (not padded) feature positions
    projected: torch.Tensor  # (B, d, h, w): the backbone's last feature map after the 1x1 projection
    stages: list  # the backbone outputs DETR reads (feature_stages), (B, C_i, h_i, w_i)


def sine_positions(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, H, W) 1/0 pixel mask → (B, 2*dim, H, W) normalised sine/cosine positions (DETR's)."""
    y = mask.cumsum(1, dtype=torch.float32)
    x = mask.cumsum(2, dtype=torch.float32)
    y = y / (y[:, -1:, :] + 1e-6) * 2 * math.pi
    x = x / (x[:, :, -1:] + 1e-6) * 2 * math.pi
    freq = 10000 ** (2 * torch.div(torch.arange(dim, device=mask.device), 2, rounding_mode="floor").float() / dim)
    px, py = x[..., None] / freq, y[..., None] / freq
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


def _attend(mha: Attention, query, key, value, mask) -> torch.Tensor:
    """The shared attention module with DETR's positions: added to queries and keys, never to values."""
    q, k, v = (split_heads(proj(t), mha.num_heads) for proj, t in
               ((mha.q_proj, query), (mha.k_proj, key), (mha.v_proj, value)))
    return mha.out_proj(merge_heads(attention(q, k, v, mask)))


class EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, act: str):
        super().__init__()
        self.self_attn = Attention(d, heads, names=("q_proj", "k_proj", "v_proj", "out_proj"))
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = FastLinear(d, ffn), FastLinear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.act = activation(act)

    def forward(self, x, pos, mask):
        x = self.self_attn_layer_norm(x + _attend(self.self_attn, x + pos, x + pos, x, mask))
        return self.final_layer_norm(x + self.fc2(self.act(self.fc1(x))))


class DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, act: str):
        super().__init__()
        self.self_attn = Attention(d, heads, names=("q_proj", "k_proj", "v_proj", "out_proj"))
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = Attention(d, heads, names=("q_proj", "k_proj", "v_proj", "out_proj"))
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = FastLinear(d, ffn), FastLinear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.act = activation(act)

    def forward(self, x, query_pos, memory, memory_pos, memory_mask):
        x = self.self_attn_layer_norm(x + _attend(self.self_attn, x + query_pos, x + query_pos, x, None))
        x = self.encoder_attn_layer_norm(
            x + _attend(self.encoder_attn, x + query_pos, memory + memory_pos, memory, memory_mask))
        return self.final_layer_norm(x + self.fc2(self.act(self.fc1(x))))


class _Layers(nn.Module):
    def __init__(self, layers, norm: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.layernorm = nn.LayerNorm(norm) if norm else None


class ConvEncoder(nn.Module):
    def __init__(self, c: DetrConfig):
        super().__init__()
        self.model = ResNetModel(c.resnet(), norm=FrozenBatchNorm2d)


class Backbone(nn.Module):
    def __init__(self, c: DetrConfig):
        super().__init__()
        self.conv_encoder = ConvEncoder(c)


class DetrModel(nn.Module):
    def __init__(self, c: DetrConfig):
        super().__init__()
        if c.dilation or c.position_embedding_type != "sine":
            raise ValueError("DETR with dilation or learnt position embeddings is not supported yet.")
        self.backbone = Backbone(c)
        self.feature_stages = c.feature_stages()
        self.input_projection = nn.Conv2d(c.resnet().hidden_sizes[self.feature_stages[-1]], c.d_model, kernel_size=1)
        self.query_position_embeddings = nn.Embedding(c.num_queries, c.d_model)
        act = c.activation_function
        self.encoder = _Layers(EncoderLayer(c.d_model, c.encoder_attention_heads, c.encoder_ffn_dim, act)
                               for _ in range(c.encoder_layers))
        self.decoder = _Layers((DecoderLayer(c.d_model, c.decoder_attention_heads, c.decoder_ffn_dim, act)
                                for _ in range(c.decoder_layers)), norm=c.d_model)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> DetrFeatures:
        B, _, H, W = pixel_values.shape
        if pixel_mask is None:
            pixel_mask = torch.ones(B, H, W, dtype=torch.long, device=pixel_values.device)
        stages = self.backbone.conv_encoder.model.stages(pixel_values.to(self.input_projection.weight.dtype))
        stages = [stages[i] for i in self.feature_stages]
        features = stages[-1]
        mask = F.interpolate(pixel_mask[None].float(), size=features.shape[-2:]).to(torch.bool)[0]  # (B, h, w)
        pos = sine_positions(mask, self.input_projection.out_channels // 2).flatten(2).transpose(1, 2)
        projected = self.input_projection(features)  # (B, d, h, w)
        x = projected.flatten(2).transpose(1, 2)  # (B, h*w, d)
        key_mask = None
        if not bool(mask.all()):
            key_mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).flatten(1)
            key_mask.masked_fill_(~mask.flatten(1), torch.finfo(x.dtype).min)
            key_mask = key_mask[:, None, None, :]
        for layer in self.encoder.layers:
            x = layer(x, pos, key_mask)
        queries = self.query_position_embeddings.weight[None].expand(B, -1, -1)
        h = torch.zeros_like(queries)
        for layer in self.decoder.layers:
            h = layer(h, queries, x, pos, key_mask)
        return DetrFeatures(self.decoder.layernorm(h), x, mask, projected, stages)


class DetrForObjectDetection(nn.Module):
    def __init__(self, c: DetrConfig):
        super().__init__()
        self.model = DetrModel(c)
        self.class_labels_classifier = FastLinear(c.d_model, c.num_labels + 1)
        self.bbox_predictor = MLPPredictionHead(c.d_model, c.d_model, 4, 3)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> Detections:
        h = self.model(pixel_values, pixel_mask).decoded
        return Detections(self.class_labels_classifier(h), self.bbox_predictor(h).sigmoid())


class Segmentation(NamedTuple):
    logits: torch.Tensor  # (B, Q, num_labels + 1): the last class is "no object"
    pred_boxes: torch.Tensor  # (B, Q, 4) as (cx, cy, w, h) relative to the image
    pred_masks: torch.Tensor  # (B, Q, H/4, W/4) mask logits per query


class AttentionMap(nn.Module):
    """Each query's softmax weights over the encoder's feature map, per head, with no values (DETR's
    bbox_attention): (B, Q, d), (B, h*w, d) → (B, Q, heads, h, w)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.num_heads = heads
        self.q_linear, self.k_linear = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, Q, d = queries.shape
        h, w = mask.shape[-2:]
        q = self.q_linear(queries).view(B, Q, self.num_heads, -1) * float(d / self.num_heads) ** -0.5
        k = self.k_linear(memory).view(B, h, w, self.num_heads, -1)
        weights = torch.einsum("bqnc,bhwnc->bqnhw", q, k)
        weights = weights.masked_fill(~mask[:, None, None], torch.finfo(weights.dtype).min)  # padded positions
        return weights.flatten(2).softmax(-1).view(weights.shape)


class MaskHead(nn.Module):
    """DETR's small FPN-style conv head: the projected feature map, repeated per query beside its attention
    maps, refined by conv → GroupNorm → ReLU at three finer backbone stages → one mask logit map per query."""

    def __init__(self, dim: int, fpn_dims: list[int], context: int):
        super().__init__()
        if dim % 8:
            raise ValueError(f"DETR's mask head needs d_model + attention heads ({dim}) divisible by 8 (its "
                             f"GroupNorm has 8 groups).")
        sizes = [dim, dim, context // 2, context // 4, context // 8, context // 16]  # in/out of lay1..lay5
        for i in range(1, 6):
            self.add_module(f"lay{i}", nn.Conv2d(sizes[i - 1], sizes[i], 3, padding=1))
            self.add_module(f"gn{i}", nn.GroupNorm(8 if i == 1 else min(8, sizes[i]), sizes[i]))
        self.out_lay = nn.Conv2d(sizes[5], 1, 3, padding=1)
        for i in range(1, 4):
            self.add_module(f"adapter{i}", nn.Conv2d(fpn_dims[i - 1], sizes[i + 1], 1))

    def _conv(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self._modules[f"gn{i}"](self._modules[f"lay{i}"](x)))

    def forward(self, x: torch.Tensor, attention: torch.Tensor, fpns: list[torch.Tensor]) -> torch.Tensor:
        Q = attention.shape[1]
        x = torch.cat((x.repeat_interleave(Q, 0), attention.flatten(0, 1)), 1)  # (B*Q, d + heads, h, w)
        x = self._conv(2, self._conv(1, x))
        for i, fpn in enumerate(fpns, start=1):
            fpn = self._modules[f"adapter{i}"](fpn).repeat_interleave(Q, 0)
            x = self._conv(i + 2, fpn + F.interpolate(x, size=fpn.shape[-2:], mode="nearest"))
        return self.out_lay(x)  # (B*Q, 1, H/4, W/4)


class DetrForSegmentation(nn.Module):
    """Detection plus the panoptic mask head (transformers' DetrForSegmentation)."""

    segmentation_subtasks = ("panoptic", "instance", "semantic")  # what DETR's post-processing offers

    def __init__(self, c: DetrConfig):
        super().__init__()
        self.detr = DetrForObjectDetection(c)
        sizes = [c.resnet().hidden_sizes[i] for i in c.feature_stages()]
        if len(sizes) < 3:
            raise ValueError(f"DETR's mask head needs at least 3 backbone outputs; this checkpoint's backbone gives "
                             f"{len(sizes)}.")
        self.mask_head = MaskHead(c.d_model + c.encoder_attention_heads, sizes[::-1][-3:], c.d_model)
        self.bbox_attention = AttentionMap(c.d_model, c.encoder_attention_heads)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> Segmentation:
        f = self.detr.model(pixel_values, pixel_mask)
        B, Q = f.decoded.shape[:2]
        attention = self.bbox_attention(f.decoded, f.memory, f.mask)
        masks = self.mask_head(f.projected, attention, [f.stages[2], f.stages[1], f.stages[0]])
        return Segmentation(self.detr.class_labels_classifier(f.decoded), self.detr.bbox_predictor(f.decoded).sigmoid(),
                            masks.view(B, Q, *masks.shape[-2:]))


_BACKBONE = r"(backbone\.conv_encoder\.model\.)"


def _stage(m, tail: str) -> str:
    return f"{m[1]}encoder.stages.{int(m[2]) - 1}.layers.{m[3]}.{tail}"


TIMM_RENAMES = [  # timm's resnet names → transformers' ResNet names (ours)
    (_BACKBONE + r"conv1\.", r"\1embedder.embedder.convolution."),
    (_BACKBONE + r"bn1\.", r"\1embedder.embedder.normalization."),
    (_BACKBONE + r"layer(\d)\.(\d+)\.downsample\.0\.", lambda m: _stage(m, "shortcut.convolution.")),
    (_BACKBONE + r"layer(\d)\.(\d+)\.downsample\.1\.", lambda m: _stage(m, "shortcut.normalization.")),
    (_BACKBONE + r"layer(\d)\.(\d+)\.conv(\d)\.", lambda m: _stage(m, f"layer.{int(m[4]) - 1}.convolution.")),
    (_BACKBONE + r"layer(\d)\.(\d+)\.bn(\d)\.", lambda m: _stage(m, f"layer.{int(m[4]) - 1}.normalization.")),
]


def weight_map(c: DetrConfig, head: str) -> WeightMap:
    return WeightMap(renames=TIMM_RENAMES if c.use_timm_backbone else [], unused=[r"num_batches_tracked$"])


def build(c: DetrConfig, head: str) -> nn.Module:
    return DetrForSegmentation(c) if head == "image-segmentation" else DetrForObjectDetection(c)


FAMILY = Family("detr", DetrConfig, ("object-detection", "image-segmentation"), build, weight_map,
                lambda c: "", input_names=("pixel_values", "pixel_mask"), max_tokens=lambda c: None)
