"""CLIP and SigLIP (transformers 4.57.6 CLIPModel / SiglipModel): a text tower and a vision tower of
pre-norm blocks, their embeddings compared by cosine similarity times a learnt scale.

The variants differ as data: CLIP's text tower is causal and pools at the end-of-text token, its vision
tower has a class token and a pre-LayerNorm, both project without bias, and its image scores are a
softmax over the labels; SigLIP's text tower pools the last position through a `head`, its vision tower
pools by attention (a learnt probe), logits get a bias, scores are independent sigmoids, and texts are
padded to 64 tokens. The model declares `scores` and `text_padding`; pipelines read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .kernels import FastLinear as Linear
from .registry import Family
from .vision import CLIP_BLOCK_RENAMES, Activation, PatchEmbeddings, PreNormEncoder
from .weights import WeightMap

TOWER_DEFAULTS = {  # transformers' CLIP/SigLIP text and vision config defaults
    ("clip", "text"): dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                           num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                           layer_norm_eps=1e-5, eos_token_id=49407),
    ("clip", "vision"): dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                             image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                             num_channels=3),
    ("siglip", "text"): dict(vocab_size=32000, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                             num_attention_heads=12, max_position_embeddings=64, hidden_act="gelu_pytorch_tanh",
                             layer_norm_eps=1e-6, projection_size=None),
    ("siglip", "vision"): dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                               image_size=224, patch_size=16, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                               num_channels=3, vision_use_head=True),
}


@dataclass
class ClipConfig(ModelConfig):
    text_config: dict = field(default_factory=dict)
    vision_config: dict = field(default_factory=dict)
    projection_dim: int = 512
    tower_defaults: ClassVar[dict] = TOWER_DEFAULTS

    @property
    def siglip(self) -> bool:
        return self.model_type == "siglip"

    @property
    def variant(self) -> str:
        return "siglip" if self.siglip else "clip"

    @property
    def pool_at_max_id(self) -> bool:
        """CLIP's text tower pools at the end-of-text token; checkpoints with eos_token_id 2 (the old default)
        pool at the largest token id instead."""
        return self.tower("text").get("eos_token_id") == 2

    def tower(self, kind: str) -> dict:
        defaults = self.tower_defaults[(self.variant, kind)]
        given = self.text_config if kind == "text" else self.vision_config
        return {**defaults, **{k: v for k, v in (given or {}).items() if k in defaults and v is not None}}


def _encoder(t: dict) -> PreNormEncoder:
    return PreNormEncoder(t["num_hidden_layers"], t["hidden_size"], t["num_attention_heads"], t["intermediate_size"],
                          t["hidden_act"], t["layer_norm_eps"])


class TextEmbeddings(nn.Module):
    def __init__(self, t: dict):
        super().__init__()
        self.token_embedding = nn.Embedding(t["vocab_size"], t["hidden_size"])
        self.position_embedding = nn.Embedding(t["max_position_embeddings"], t["hidden_size"])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        return self.token_embedding(input_ids) + self.position_embedding.weight[:T]


class TextTower(nn.Module):
    """Token + position embeddings → encoder → final LayerNorm → one pooled vector per text."""

    def __init__(self, t: dict, siglip: bool, pool_at_max_id: bool = False):
        super().__init__()
        self.embeddings = TextEmbeddings(t)
        self.encoder = _encoder(t)
        self.final_layer_norm = nn.LayerNorm(t["hidden_size"], eps=t["layer_norm_eps"])
        self.causal, self.eos_token_id, self.pool_at_max_id = not siglip, t.get("eos_token_id"), pool_at_max_id
        self.head = Linear(t["hidden_size"], t["projection_size"] or t["hidden_size"]) if siglip else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embeddings(input_ids)  # (L, T, C)
        L, T = input_ids.shape
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = torch.zeros(L, 1, 1, T, dtype=x.dtype, device=x.device)
            mask.masked_fill_(attention_mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
        if self.causal:
            causal = torch.full((T, T), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device).triu(1)
            mask = causal[None, None] if mask is None else mask + causal
        x = self.final_layer_norm(self.encoder(x, mask))
        if self.head is not None:  # SigLIP: the last position
            return self.head(x[:, -1])
        # CLIP: the end-of-text token, or the largest id (old CLIP checkpoints, OWL-ViT)
        where = input_ids.argmax(-1) if self.pool_at_max_id else (input_ids == self.eos_token_id).int().argmax(-1)
        return x[torch.arange(L, device=x.device), where]  # (L, C)


class VisionEmbeddings(nn.Module):
    def __init__(self, v: dict, siglip: bool):
        super().__init__()
        C, grid = v["hidden_size"], v["image_size"] // v["patch_size"]
        self.class_embedding = None if siglip else nn.Parameter(torch.zeros(C))
        self.patch_embedding = nn.Conv2d(v["num_channels"], C, v["patch_size"], stride=v["patch_size"], bias=siglip)
        self.position_embedding = nn.Embedding(grid * grid + (0 if siglip else 1), C)
        self.image_size = v["image_size"]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        B, _, H, W = pixel_values.shape
        if (H, W) != (self.image_size, self.image_size):
            raise ValueError(f"Input image size ({H}*{W}) doesn't match model ({self.image_size}*{self.image_size}).")
        x = PatchEmbeddings.flatten(self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype)))
        if self.class_embedding is not None:
            x = torch.cat((self.class_embedding.expand(B, 1, -1), x), dim=1)
        return x + self.position_embedding.weight


class AttentionPoolingHead(nn.Module):
    """SigLIP's `head`: a learnt probe attends over the tokens, then LayerNorm + MLP with a residual."""

    def __init__(self, v: dict):
        super().__init__()
        C = v["hidden_size"]
        self.probe = nn.Parameter(torch.zeros(1, 1, C))
        self.attention = nn.MultiheadAttention(C, v["num_attention_heads"], batch_first=True)
        self.layernorm = nn.LayerNorm(C, eps=v["layer_norm_eps"])
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", Linear(C, v["intermediate_size"]))
        self.mlp.add_module("act", Activation(v["hidden_act"]))
        self.mlp.add_module("fc2", Linear(v["intermediate_size"], C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attention(self.probe.expand(x.shape[0], -1, -1), x, x, need_weights=False)[0]  # (B, 1, C)
        return (h + self.mlp(self.layernorm(h)))[:, 0]


class VisionTower(nn.Module):
    def __init__(self, v: dict, siglip: bool):
        super().__init__()
        C, eps = v["hidden_size"], v["layer_norm_eps"]
        self.embeddings = VisionEmbeddings(v, siglip)
        self.pre_layrnorm = None if siglip else nn.LayerNorm(C, eps=eps)  # (sic: the checkpoints' spelling)
        self.encoder = _encoder(v)
        self.post_layernorm = nn.LayerNorm(C, eps=eps)
        self.head = AttentionPoolingHead(v) if siglip and v["vision_use_head"] else None
        self.siglip = siglip

    def hidden_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The encoder's output tokens (B, T, C), before post_layernorm."""
        x = self.embeddings(pixel_values)
        if self.pre_layrnorm is not None:
            x = self.pre_layrnorm(x)
        return self.encoder(x)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.hidden_states(pixel_values)
        if not self.siglip:
            return self.post_layernorm(x[:, 0])  # (B, C)
        x = self.post_layernorm(x)
        return self.head(x) if self.head is not None else x.mean(1)


class DualEncoder(nn.Module):
    """Both towers; `forward` gives logits_per_image (B images, L texts)."""

    def __init__(self, c: ClipConfig):
        super().__init__()
        t, v = c.tower("text"), c.tower("vision")
        self.text_model = TextTower(t, c.siglip, c.pool_at_max_id)
        self.vision_model = VisionTower(v, c.siglip)
        if not c.siglip:
            self.visual_projection = Linear(v["hidden_size"], c.projection_dim, bias=False)
            self.text_projection = Linear(t["hidden_size"], c.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.zeros(1) if c.siglip else torch.zeros(()))
        self.logit_bias = nn.Parameter(torch.zeros(1)) if c.siglip else None
        self.scores = "sigmoid" if c.siglip else "softmax"
        self.text_padding = {"padding": "max_length", "max_length": 64, "truncation": True} if c.siglip \
            else {"padding": True}

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.vision_model(pixel_values)
        x = self.visual_projection(x) if self.logit_bias is None else x
        return F.normalize(x, dim=-1)  # (B, D)

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.text_model(input_ids, attention_mask)
        x = self.text_projection(x) if self.logit_bias is None else x
        return F.normalize(x, dim=-1)  # (L, D)

    def similarity(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        logits = image_embeds @ text_embeds.t() * self.logit_scale.exp()  # (B, L)
        return logits + self.logit_bias if self.logit_bias is not None else logits

    def forward(self, pixel_values, input_ids, attention_mask=None) -> torch.Tensor:
        return self.similarity(self.image_embeds(pixel_values), self.text_embeds(input_ids, attention_mask))


WEIGHTS = WeightMap(renames=CLIP_BLOCK_RENAMES, unused=[r"position_ids$"])

FAMILY = Family("clip", ClipConfig, ("zero-shot-image-classification",), lambda c, head: DualEncoder(c),
                lambda c, head: WEIGHTS, lambda c: "", input_names=("pixel_values", "input_ids", "attention_mask"),
                max_tokens=lambda c: c.tower("text")["max_position_embeddings"])
