"""Wav2Vec2 and HuBERT (transformers 4.57.6 `modeling_wav2vec2` / `modeling_hubert`): raw audio encoders.

A stack of 1-D convolutions (group norm on the first layer, or layer norm on every layer) turns
16 kHz samples into frames, a linear projection widens them, a grouped convolution adds relative
positions, and a transformer encoder (post-norm, or pre-norm in the "stable layer norm" variant)
follows. HuBERT is the same network under another prefix; what differs is config data.

Heads: `ctc` (frame logits over a character vocabulary) and `audio-classification` (mean-pooled
projector → classifier, optionally over a learned weighting of every layer's output).

Padding: with an attention mask, the group norm takes its statistics over each row's own frames,
so a padded batch gives every row the result it has alone (transformers' does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .kernels import FastLinear as Linear
from .layers import Attention, activation, padding_mask
from .registry import Family
from .weights import WeightMap

HEADS = ("base", "ctc", "audio-classification")


@dataclass
class Wav2Vec2Config(ModelConfig):
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: list = field(default_factory=lambda: [512] * 7)
    conv_stride: list = field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])
    conv_kernel: list = field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    feat_proj_layer_norm: bool = True
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    vocab_size: int = 32
    add_adapter: bool = False
    conv_pos_batch_norm: bool = False

    def __post_init__(self):
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm must be 'group' or 'layer'; got {self.feat_extract_norm!r}.")
        if self.add_adapter or self.conv_pos_batch_norm:
            raise NotImplementedError("Wav2Vec2 checkpoints with add_adapter or conv_pos_batch_norm are not "
                                      "supported by inferline yet.")

    @property
    def inputs_to_logits_ratio(self) -> int:
        return math.prod(self.conv_stride)

    def frame_lengths(self, lengths: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """Input samples → frames after the first `layers` convolutions (all by default)."""
        for kernel, stride in list(zip(self.conv_kernel, self.conv_stride))[:layers]:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths


class ConvLayer(nn.Module):
    """conv → [norm] → activation; `norm` is "group" (over time, per channel), "layer" (per frame) or None."""

    def __init__(self, cfg: Wav2Vec2Config, i: int, norm: str | None):
        super().__init__()
        in_dim = cfg.conv_dim[i - 1] if i else 1
        out_dim = cfg.conv_dim[i]
        self.conv = nn.Conv1d(in_dim, out_dim, cfg.conv_kernel[i], cfg.conv_stride[i], bias=cfg.conv_bias)
        self.norm = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_dim, out_dim, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_dim, elementwise_affine=True)
        self.act = activation(cfg.feat_extract_activation)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(x)  # (B, C, T)
        if self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.norm == "group":
            x = self._group_norm(x, lengths)
        return self.act(x)

    def _group_norm(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if lengths is None:
            return self.layer_norm(x)
        valid = (torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]).to(x.dtype)[:, None]  # (B, 1, T)
        count = valid.sum(-1, keepdim=True)
        mean = (x * valid).sum(-1, keepdim=True) / count
        var = (((x - mean) * valid) ** 2).sum(-1, keepdim=True) / count
        x = (x - mean) / torch.sqrt(var + self.layer_norm.eps)
        return x * self.layer_norm.weight[:, None] + self.layer_norm.bias[:, None]


class FeatureEncoder(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.cfg = cfg
        norms = ["group" if i == 0 else None for i in range(len(cfg.conv_dim))] \
            if cfg.feat_extract_norm == "group" else ["layer"] * len(cfg.conv_dim)
        self.conv_layers = nn.ModuleList(ConvLayer(cfg, i, n) for i, n in enumerate(norms))

    def forward(self, values: torch.Tensor, sample_lengths: torch.Tensor | None) -> torch.Tensor:
        x = values[:, None]  # (B, 1, samples)
        first = None if sample_lengths is None else self.cfg.frame_lengths(sample_lengths, 1)
        for layer in self.conv_layers:
            x = layer(x, first)
        return x.transpose(1, 2)  # (B, T, C)


class FeatureProjection(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.conv_dim[-1], eps=cfg.layer_norm_eps) if cfg.feat_proj_layer_norm else None
        self.projection = Linear(cfg.conv_dim[-1], cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(x) if self.layer_norm is not None else x)


class PositionalConvEmbedding(nn.Module):
    """Grouped convolution over time with a weight-normed kernel (g * v / |v|, norm over dims 0 and 1)."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        k, C, groups = cfg.num_conv_pos_embeddings, cfg.hidden_size, cfg.num_conv_pos_embedding_groups
        self.kernel, self.groups = k, groups
        self.weight_g = nn.Parameter(torch.empty(1, 1, k))
        self.weight_v = nn.Parameter(torch.empty(C, C // groups, k))
        self.bias = nn.Parameter(torch.empty(C))
        self.act = activation(cfg.feat_extract_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.weight_v
        weight = self.weight_g * v / v.norm(dim=(0, 1), keepdim=True)
        y = F.conv1d(x.transpose(1, 2), weight, self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:  # "same" padding for an even kernel: drop the extra last frame
            y = y[:, :, :-1]
        return self.act(y).transpose(1, 2)  # (B, T, C)


class FeedForward(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.intermediate_dense = Linear(cfg.hidden_size, cfg.intermediate_size)
        self.output_dense = Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.act(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    """Post-norm (residual then norm) or, with `pre_norm`, the stable-layer-norm order (norm then residual)."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.pre_norm = cfg.do_stable_layer_norm
        self.attention = Attention(cfg.hidden_size, cfg.num_attention_heads, names=("q_proj", "k_proj", "v_proj", "out_proj"))
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.feed_forward = FeedForward(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attention(self.layer_norm(x), mask)
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.attention(x, mask))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.pre_norm = cfg.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, frames_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """Every layer's input and the final output ((B, T, C) each; the last one normed in the pre-norm order)."""
        if frames_mask is not None:
            x = x * frames_mask[..., None].to(x.dtype)  # padded frames are zero before the position conv
        x = x + self.pos_conv_embed(x)
        if not self.pre_norm:
            x = self.layer_norm(x)
        mask = padding_mask(frames_mask, x.dtype)
        states = [x]
        for layer in self.layers:
            states.append(layer(states[-1], mask))
        if self.pre_norm:
            states[-1] = self.layer_norm(states[-1])
        return states


class Wav2Vec2Model(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = FeatureEncoder(cfg)
        self.feature_projection = FeatureProjection(cfg)
        self.encoder = Encoder(cfg)

    def hidden_states(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
                      ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """(every layer's hidden states, (B, T) frames mask or None)."""
        lengths = None if attention_mask is None else attention_mask.sum(-1)
        features = self.feature_extractor(input_values, lengths)
        frames_mask = None
        if lengths is not None:
            frames = self.cfg.frame_lengths(lengths)
            frames_mask = torch.arange(features.shape[1], device=features.device)[None, :] < frames[:, None]
        return self.encoder(self.feature_projection(features), frames_mask), frames_mask

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.hidden_states(input_values, attention_mask)[0][-1]


class CTCModel(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config, prefix: str):
        super().__init__()
        self.prefix = prefix
        self.add_module(prefix, Wav2Vec2Model(cfg))
        self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm_head(getattr(self, self.prefix)(input_values, attention_mask))  # (B, T, V)


class AudioClassificationModel(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config, prefix: str):
        super().__init__()
        self.prefix = prefix
        self.add_module(prefix, Wav2Vec2Model(cfg))
        if cfg.use_weighted_layer_sum:
            self.layer_weights = nn.Parameter(torch.empty(cfg.num_hidden_layers + 1))
        self.projector = Linear(cfg.hidden_size, cfg.classifier_proj_size)
        self.classifier = Linear(cfg.classifier_proj_size, cfg.num_labels)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        states, frames_mask = getattr(self, self.prefix).hidden_states(input_values, attention_mask)
        if hasattr(self, "layer_weights"):
            weights = torch.softmax(self.layer_weights, dim=-1)
            hidden = (torch.stack(states, dim=1) * weights[None, :, None, None]).sum(dim=1)
        else:
            hidden = states[-1]
        hidden = self.projector(hidden)  # (B, T, P)
        if frames_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            keep = frames_mask[..., None].to(hidden.dtype)
            pooled = (hidden * keep).sum(dim=1) / keep.sum(dim=1)
        return self.classifier(pooled)  # (B, num_labels)


def _prefix(cfg: Wav2Vec2Config) -> str:
    return "hubert" if cfg.model_type == "hubert" else "wav2vec2"


def build(cfg: Wav2Vec2Config, head: str) -> nn.Module:
    if head == "ctc":
        return CTCModel(cfg, _prefix(cfg))
    if head == "audio-classification":
        return AudioClassificationModel(cfg, _prefix(cfg))
    return Wav2Vec2Model(cfg)


def weight_map(cfg: Wav2Vec2Config, head: str) -> WeightMap:
    renames = [(r"pos_conv_embed\.conv\.(parametrizations\.weight\.original0|weight_g)$", "pos_conv_embed.weight_g"),
               (r"pos_conv_embed\.conv\.(parametrizations\.weight\.original1|weight_v)$", "pos_conv_embed.weight_v"),
               (r"pos_conv_embed\.conv\.bias$", "pos_conv_embed.bias")]
    unused = [r"masked_spec_embed$", r"quantizer\.", r"project_q\.", r"project_hid\."]
    if head != "ctc":
        unused.append(r"^lm_head\.")
    if head != "audio-classification":
        unused += [r"^projector\.", r"^classifier\.", r"^layer_weights$"]
    return WeightMap(renames, unused)


FAMILY = Family("wav2vec2", Wav2Vec2Config, HEADS, build, weight_map, _prefix,
                input_names=("input_values", "attention_mask"), max_tokens=lambda cfg: None)
