"""LayoutLMv3: a RoBERTa-style text encoder with box embeddings, over the text tokens and the page's image patches.

Matches transformers 4.57.6 `modeling_layoutlmv3`. Text embeddings are BertEmbeddings with RoBERTa positions
and LayoutLMv3's concatenated box tables (`layout_widths`). With `pixel_values`, the ViT-style patch tokens
(class token, patches, position table, then a LayerNorm) follow the text and the whole sequence is
LayerNorm-ed once more. Attention is BERT's post-norm encoder; where the config asks, each layer adds the same
relative-position biases (1-D over token positions, 2-D over the boxes' x0 and y1, T5-style log buckets)
to the scores, passed as part of the additive mask. The span head is a dense → tanh → out_proj per token,
read over the text tokens only (the patches follow them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .bert import BertConfig, BertEmbeddings
from .heads import ClassificationHead, QuestionAnsweringModel
from .layers import padding_mask
from .layoutlm import DOCUMENT_QA
from .post_norm import PostNormEncoder
from .registry import Family, UnsupportedModelError
from .t5 import relative_buckets
from .vision import TokenEmbeddings
from .weights import WeightMap

PAGE = 1000  # box coordinates are thousandths of the page


@dataclass
class LayoutLMv3Config(BertConfig):
    layer_norm_eps: float = 1e-5
    pad_token_id: int | None = 1
    max_2d_position_embeddings: int = 1024
    coordinate_size: int = 128
    shape_size: int = 128
    has_relative_attention_bias: bool = True
    rel_pos_bins: int = 32
    max_rel_pos: int = 128
    has_spatial_attention_bias: bool = True
    rel_2d_pos_bins: int = 64
    max_rel_2d_pos: int = 256
    text_embed: bool = True
    visual_embed: bool = True
    input_size: int = 224
    num_channels: int = 3
    patch_size: int = 16

    @property
    def roberta_like(self) -> bool:
        return True  # positions count from pad_token_id + 1

    @property
    def grid(self) -> int:
        return self.input_size // self.patch_size


class AttentionBias(nn.Module):
    """(B, S) token positions and (B, S, 4) boxes → (B, H, S, S) score biases: learnt per bucket of the
    distance between positions (1-D) and between the boxes' x0 and y1 (2-D)."""

    def __init__(self, cfg: LayoutLMv3Config):
        super().__init__()
        H = cfg.num_attention_heads
        self.cfg = cfg
        if cfg.has_relative_attention_bias:
            self.rel_pos_bias = nn.Linear(cfg.rel_pos_bins, H, bias=False)
        if cfg.has_spatial_attention_bias:
            self.rel_pos_x_bias = nn.Linear(cfg.rel_2d_pos_bins, H, bias=False)
            self.rel_pos_y_bias = nn.Linear(cfg.rel_2d_pos_bins, H, bias=False)

    @staticmethod
    def _lookup(table: nn.Linear, values: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
        relative = values[:, None, :] - values[:, :, None]  # (B, S, S): [i, j] = v_j - v_i
        bucket = relative_buckets(relative, True, buckets, max_distance)
        return F.embedding(bucket, table.weight.t()).permute(0, 3, 1, 2)  # (B, H, S, S)

    def forward(self, positions: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        cfg, bias = self.cfg, 0
        if cfg.has_relative_attention_bias:
            bias = self._lookup(self.rel_pos_bias, positions, cfg.rel_pos_bins, cfg.max_rel_pos)
        if cfg.has_spatial_attention_bias:
            bias = bias + self._lookup(self.rel_pos_x_bias, boxes[..., 0], cfg.rel_2d_pos_bins, cfg.max_rel_2d_pos) \
                + self._lookup(self.rel_pos_y_bias, boxes[..., 3], cfg.rel_2d_pos_bins, cfg.max_rel_2d_pos)
        return bias


def patch_boxes(grid: int) -> torch.Tensor:
    """(1 + grid², 4) boxes of the image tokens: the class token's [1, 1, 999, 999], then each patch's cell."""
    edges = torch.div(torch.arange(0, PAGE * (grid + 1), PAGE), grid, rounding_mode="trunc")  # (grid + 1,)
    y, x = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    cells = torch.stack((edges[x], edges[y], edges[x + 1], edges[y + 1]), dim=-1).view(-1, 4)
    return torch.cat((torch.tensor([[1, 1, PAGE - 1, PAGE - 1]]), cells))


class LayoutLMv3Model(nn.Module):
    def __init__(self, cfg: LayoutLMv3Config):
        super().__init__()
        if not cfg.text_embed:
            raise UnsupportedModelError("LayoutLMv3 with text_embed=false (an image-only encoder) is not supported.")
        self.cfg = cfg
        self.embeddings = BertEmbeddings.from_config(cfg, layout_positions=cfg.max_2d_position_embeddings,
                                                     layout_widths=(cfg.coordinate_size, cfg.shape_size))
        if cfg.visual_embed:
            self.visual = TokenEmbeddings(cfg.num_channels, cfg.hidden_size, cfg.patch_size, cfg.input_size)
            self.norm = nn.LayerNorm(cfg.hidden_size, eps=1e-6)  # the patch tokens' own norm
            self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)  # text + patches
        if cfg.has_relative_attention_bias or cfg.has_spatial_attention_bias:
            self.attention_bias = AttentionBias(cfg)
        self.encoder = PostNormEncoder(cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
                                       cfg.intermediate_size, cfg.hidden_act, cfg.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, bbox=None, pixel_values=None):
        B, T = input_ids.shape
        if bbox is None:
            bbox = input_ids.new_zeros((B, T, 4))
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids, bbox=bbox)  # (B, T, C)
        positions, boxes = torch.arange(T, device=x.device)[None].expand(B, T), bbox
        if pixel_values is not None and self.cfg.visual_embed:
            patches = self.norm(self.visual(pixel_values))  # (B, P, C): class token + patches
            P = patches.shape[1]
            x = self.LayerNorm(torch.cat((x, patches.to(x.dtype)), dim=1))  # (B, T + P, C)
            attention_mask = torch.cat((attention_mask, attention_mask.new_ones((B, P))), dim=1)
            positions = torch.cat((positions, torch.arange(P, device=x.device)[None].expand(B, P)), dim=1)
            boxes = torch.cat((bbox, patch_boxes(self.cfg.grid).to(bbox)[None].expand(B, P, 4)), dim=1)
        mask = padding_mask(attention_mask, x.dtype)  # (B, 1, 1, S) or None
        if "attention_bias" in self._modules:  # added to the scores, scaled like them
            bias = (self.attention_bias(positions, boxes) / math.sqrt(self.cfg.hidden_size // self.cfg.num_attention_heads))
            mask = bias.to(x.dtype) if mask is None else mask + bias.to(x.dtype)
        return self.encoder(x, mask)  # (B, S, C)


def _prefix(cfg: LayoutLMv3Config) -> str:
    return "layoutlmv3"


def build(cfg: LayoutLMv3Config, head: str) -> nn.Module:
    backbone = LayoutLMv3Model(cfg)
    if head == "base":
        return backbone
    return QuestionAnsweringModel(backbone, "layoutlmv3", cfg.hidden_size,
                                  ClassificationHead(cfg.hidden_size, cfg.num_labels, "tanh", first_token=False))


def weight_map(cfg: LayoutLMv3Config, head: str) -> WeightMap:
    p = r"^((?:layoutlmv3\.)?)"
    renames = [(p + r"patch_embed\.proj\.", r"\1visual.patch_embeddings.projection."),
               (p + r"cls_token$", r"\1visual.cls_token"), (p + r"pos_embed$", r"\1visual.position_embeddings"),
               (p + r"encoder\.(rel_pos\w*bias)\.", r"\1attention_bias.\2.")]
    unused = [r"^qa_outputs\.", r"^classifier\."] if head == "base" else []
    return WeightMap(renames, unused, {})


def _input_names(cfg: LayoutLMv3Config) -> tuple[str, ...]:
    names = ("input_ids", "attention_mask", "token_type_ids", "bbox")
    return names + ("pixel_values",) if cfg.visual_embed else names


FAMILY = Family("layoutlmv3", LayoutLMv3Config, ("base", "question-answering", DOCUMENT_QA), build, weight_map,
                _prefix, input_names=_input_names, max_tokens=lambda cfg: cfg.max_position_embeddings - cfg.pad_token_id - 1)
