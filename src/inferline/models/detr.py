"""DETR (transformers 4.57.6 DetrModel / DetrForObjectDetection): a ResNet backbone with frozen BatchNorm,
a 1x1 projection, a post-norm transformer encoder over the feature map (sine positions added to queries
and keys), a decoder of learnt object queries, and class / box heads.

The backbone loads from either naming: transformers' ResNetBackbone (`embedder`, `encoder.stages`) or
timm's resnet (`conv1`, `bn1`, `layer1.0.conv1`, `downsample.0`, ...) that the default checkpoints
(facebook/detr-resnet-50, use_timm_backbone=True) store, with BatchNorm counters (`num_batches_tracked`)
known-unused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    def resnet(self) -> ResNetConfig:
        if self.backbone_config:
            return ResNetConfig.from_hf(self.backbone_config)
        if self.backbone not in TIMM_RESNETS:
            raise ValueError(f"DETR backbone {self.backbone!r} is not supported; supported: {sorted(TIMM_RESNETS)}.")
        depths, kind = TIMM_RESNETS[self.backbone]
        sizes = [256, 512, 1024, 2048] if kind == "bottleneck" else [64, 128, 256, 512]
        return ResNetConfig(depths=depths, layer_type=kind, hidden_sizes=sizes, num_channels=self.num_channels)


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
        self.input_projection = nn.Conv2d(c.resnet().hidden_sizes[-1], c.d_model, kernel_size=1)
        self.query_position_embeddings = nn.Embedding(c.num_queries, c.d_model)
        act = c.activation_function
        self.encoder = _Layers(EncoderLayer(c.d_model, c.encoder_attention_heads, c.encoder_ffn_dim, act)
                               for _ in range(c.encoder_layers))
        self.decoder = _Layers((DecoderLayer(c.d_model, c.decoder_attention_heads, c.decoder_ffn_dim, act)
                                for _ in range(c.decoder_layers)), norm=c.d_model)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, _, H, W = pixel_values.shape
        if pixel_mask is None:
            pixel_mask = torch.ones(B, H, W, dtype=torch.long, device=pixel_values.device)
        features = self.backbone.conv_encoder.model(pixel_values.to(self.input_projection.weight.dtype))[0]
        mask = F.interpolate(pixel_mask[None].float(), size=features.shape[-2:]).to(torch.bool)[0]  # (B, h, w)
        pos = sine_positions(mask, self.input_projection.out_channels // 2).flatten(2).transpose(1, 2)
        x = self.input_projection(features).flatten(2).transpose(1, 2)  # (B, h*w, d)
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
        return self.decoder.layernorm(h)  # (B, Q, d)


class DetrForObjectDetection(nn.Module):
    def __init__(self, c: DetrConfig):
        super().__init__()
        self.model = DetrModel(c)
        self.class_labels_classifier = FastLinear(c.d_model, c.num_labels + 1)
        self.bbox_predictor = MLPPredictionHead(c.d_model, c.d_model, 4, 3)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> Detections:
        h = self.model(pixel_values, pixel_mask)
        return Detections(self.class_labels_classifier(h), self.bbox_predictor(h).sigmoid())


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


FAMILY = Family("detr", DetrConfig, ("object-detection",), lambda c, head: DetrForObjectDetection(c), weight_map,
                lambda c: "", input_names=("pixel_values", "pixel_mask"), max_tokens=lambda c: None)
