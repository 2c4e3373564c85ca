"""OWL-ViT (transformers 4.57.6 OwlViTForObjectDetection): CLIP's two towers (models/clip.py) where every
image patch becomes a detection — a box from an MLP plus a bias for the patch's place on the grid, and a
class embedding scored against each text query's embedding with a learnt per-patch shift and scale.

The image is embedded once and every query scored against it, so a call with L labels runs the vision tower
once (transformers' pipeline runs the whole model once per label); queries are independent, so the scores
are the same. Queries whose first token id is 0 are masked, as transformers masks them.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .clip import ClipConfig, DualEncoder
from .clip import WEIGHTS as CLIP_WEIGHTS
from .kernels import FastLinear as Linear
from .registry import Family
from .weights import WeightMap

OWLVIT_TOWERS = {  # transformers' OwlViTTextConfig / OwlViTVisionConfig defaults
    ("owlvit", "text"): dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                             num_attention_heads=8, max_position_embeddings=16, hidden_act="quick_gelu",
                             layer_norm_eps=1e-5, eos_token_id=49407),
    ("owlvit", "vision"): dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                               image_size=768, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                               num_channels=3),
}


class OwlViTConfig(ClipConfig):
    tower_defaults: ClassVar[dict] = OWLVIT_TOWERS

    @property
    def variant(self) -> str:
        return "owlvit"

    @property
    def pool_at_max_id(self) -> bool:
        return True  # OWL-ViT's text tower always pools at the largest token id


class ImageDetections(NamedTuple):
    class_embeds: torch.Tensor  # (B, P, C): per-patch features the class head scores
    pred_boxes: torch.Tensor  # (B, P, 4) as (cx, cy, w, h) relative to the image


class BoxHead(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.dense0, self.dense1, self.dense2 = Linear(size, size), Linear(size, size), Linear(size, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense2(F.gelu(self.dense1(F.gelu(self.dense0(x)))))


class ClassHead(nn.Module):
    def __init__(self, vision_size: int, text_size: int):
        super().__init__()
        self.dense0 = Linear(vision_size, text_size)
        self.logit_shift = Linear(vision_size, 1)
        self.logit_scale = Linear(vision_size, 1)

    def forward(self, feats: torch.Tensor, queries: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        """feats (B, P, C), queries (B, L, D), query_mask (B, L) → logits (B, P, L), float32."""
        image = self.dense0(feats)
        image = image / (torch.linalg.norm(image, dim=-1, keepdim=True) + 1e-6)
        queries = queries / (torch.linalg.norm(queries, dim=-1, keepdim=True) + 1e-6)
        logits = image @ queries.transpose(1, 2)  # (B, P, L)
        logits = (logits + self.logit_shift(feats)) * (F.elu(self.logit_scale(feats)) + 1)
        return torch.where(query_mask[:, None, :], logits, torch.finfo(logits.dtype).min).float()


def box_bias(grid_h: int, grid_w: int, device=None) -> torch.Tensor:
    """(grid_h * grid_w, 4): each patch's box starts centred on it, one patch in size (in logit space)."""
    ys, xs = torch.meshgrid(torch.arange(1, grid_h + 1, dtype=torch.float32, device=device) / grid_h,
                            torch.arange(1, grid_w + 1, dtype=torch.float32, device=device) / grid_w, indexing="ij")
    centres = torch.stack((xs, ys), -1).reshape(-1, 2).clip(0.0, 1.0)  # (P, 2) as (x, y), row-major patches
    sizes = torch.tensor([1 / grid_w, 1 / grid_h], device=device).expand_as(centres)
    logit = lambda v: torch.log(v + 1e-4) - torch.log1p(-v + 1e-4)  # noqa: E731
    return torch.cat((logit(centres), logit(sizes)), -1)


class OwlViTForObjectDetection(nn.Module):
    def __init__(self, c: OwlViTConfig):
        super().__init__()
        v, t = c.tower("vision"), c.tower("text")
        self.owlvit = DualEncoder(c)
        self.class_head = ClassHead(v["hidden_size"], t["hidden_size"])
        self.box_head = BoxHead(v["hidden_size"])
        self.layer_norm = nn.LayerNorm(v["hidden_size"], eps=v["layer_norm_eps"])
        self.grid = v["image_size"] // v["patch_size"]
        # what the pipeline needs to tokenise queries: padded to the text tower's length with id 0 (below every
        # real id, so the largest-id pooling is unchanged), never truncated
        self.text_padding = {"padding": "max_length", "max_length": t["max_position_embeddings"], "pad_id": 0}

    def image_detections(self, pixel_values: torch.Tensor) -> ImageDetections:
        x = self.owlvit.vision_model.post_layernorm(self.owlvit.vision_model.hidden_states(pixel_values))
        feats = self.layer_norm(x[:, 1:] * x[:, :1])  # patches times the class token, (B, P, C)
        boxes = self.box_head(feats) + box_bias(self.grid, self.grid, feats.device).to(feats.dtype)
        return ImageDetections(feats, boxes.sigmoid())

    def query_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.owlvit.text_embeds(input_ids, attention_mask)  # (L, D), normalised

    def class_logits(self, class_embeds: torch.Tensor, queries: torch.Tensor, query_mask: torch.Tensor):
        return self.class_head(class_embeds, queries, query_mask)


# OWL-ViT spells the vision tower's pre-LayerNorm properly; CLIP's tower keeps CLIP's spelling.
WEIGHTS = WeightMap(renames=CLIP_WEIGHTS.renames + [(r"vision_model\.pre_layernorm\.", "vision_model.pre_layrnorm.")],
                    unused=CLIP_WEIGHTS.unused)

FAMILY = Family("owlvit", OwlViTConfig, ("zero-shot-object-detection",), lambda c, head: OwlViTForObjectDetection(c),
                lambda c, head: WEIGHTS, lambda c: "", input_names=("pixel_values", "input_ids", "attention_mask"),
                max_tokens=lambda c: c.tower("text")["max_position_embeddings"])
