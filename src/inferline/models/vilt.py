"""ViLT (transformers 4.57.6 ViltModel / ViltForQuestionAnswering): one pre-norm transformer over a question's
tokens and an image's patches together, its first token pooled into a classifier over the answers.

Text tokens take BERT's embeddings; image tokens are ViT-style patches with a class token, the position table
resized (bilinearly, corners aligned) to each image's own patch grid, and the patches under padding
(`pixel_mask`) left out. Each part adds its modality embedding (0 text, 1 image) before the two are joined.

Which patches are kept is drawn with torch.multinomial on torch's global CPU generator, even in eval mode, as
transformers draws them: `max_image_length` of them at random when an image has more (a positive
max_image_length), otherwise all of them in a random order (which changes nothing but float rounding). The
draws here are those of one image at a time, row after row, so under one torch seed a batch gives what
transformers gives each image alone; the kept patches are used in grid order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .bert import BertEmbeddings
from .kernels import FastLinear as Linear
from .layers import padding_mask
from .registry import Family
from .vision import PatchEmbeddings, Pooler, PreNormEncoder, VisionOutput, interpolate_positions
from .vit import ViTConfig
from .weights import WeightMap


@dataclass
class ViltConfig(ViTConfig):
    """ViT's fields (ViltConfig's defaults equal ViTConfig's but for the image and patch sizes), plus the text's."""

    image_size: int = 384
    patch_size: int = 32
    vocab_size: int = 30522
    type_vocab_size: int = 2
    modality_type_vocab_size: int = 2
    max_image_length: int = -1  # negative: keep every patch
    max_position_embeddings: int = 40


class ViltEmbeddings(nn.Module):
    """Text embeddings and image tokens with their modality embeddings, joined: (B, T + 1 + N, C) and its mask."""

    def __init__(self, c: ViltConfig):
        super().__init__()
        C, grid = c.hidden_size, c.image_size // c.patch_size
        self.text_embeddings = BertEmbeddings(c.vocab_size, C, c.max_position_embeddings, c.type_vocab_size,
                                              c.layer_norm_eps)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.patch_embeddings = PatchEmbeddings(c.num_channels, C, c.patch_size)
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + 1, C))
        self.token_type_embeddings = nn.Embedding(c.modality_type_vocab_size, C)
        self.max_image_length = c.max_image_length

    def forward(self, input_ids, attention_mask, token_type_ids, pixel_values, pixel_mask):
        text = self.text_embeddings(input_ids, token_type_ids) + self.token_type_embeddings.weight[0]  # (B, T, C)
        image, image_mask = self.image_tokens(pixel_values, pixel_mask)  # (B, 1 + N, C), (B, 1 + N)
        image = image + self.token_type_embeddings.weight[1]
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        return torch.cat((text, image), dim=1), torch.cat((attention_mask.to(image_mask.dtype), image_mask), dim=1)

    def image_tokens(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None):
        """(B, 3, H, W) pixels (+ (B, H, W) mask) → class token + kept patches (B, 1 + N, C), and their mask."""
        grid = self.patch_embeddings.projection(pixel_values.to(self.position_embeddings.dtype))  # (B, C, h, w)
        B, C, gh, gw = grid.shape
        if pixel_mask is None:
            valid = torch.ones(B, gh, gw, dtype=torch.long, device=grid.device)
        else:  # nearest-neighbour down to the patch grid, as transformers does
            valid = F.interpolate(pixel_mask[:, None].float(), size=(gh, gw)).long()[:, 0]
        tokens = PatchEmbeddings.flatten(grid) + self._positions(valid, gh, gw)  # (B, h*w, C)
        keep = [self._draw(row) for row in valid.flatten(1).bool()]
        N = gh * gw
        if all(k.numel() == N for k in keep):  # every patch of every image: nothing to gather
            mask = torch.ones(B, N, dtype=torch.long, device=grid.device)
        else:  # each row's kept patches, padded (masked) to the longest row
            L = max(k.numel() for k in keep)
            picked, mask = tokens.new_zeros(B, L, C), torch.zeros(B, L, dtype=torch.long, device=grid.device)
            for b, k in enumerate(keep):
                picked[b, : k.numel()], mask[b, : k.numel()] = tokens[b, k], 1
            tokens = picked
        cls = (self.cls_token + self.position_embeddings[:, :1]).expand(B, -1, -1)
        return torch.cat((cls, tokens), dim=1), torch.cat((mask.new_ones(B, 1), mask), dim=1)

    def _positions(self, valid: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        """Each image's position grid: the table resized to its valid rows × columns, zeros beyond → (B|1, h*w, C)."""
        heights, widths = valid[:, :, 0].sum(1).tolist(), valid[:, 0, :].sum(1).tolist()
        table = self.position_embeddings
        sizes = {(h, w) for h, w in zip(heights, widths)}
        resized = {(h, w): interpolate_positions(table, 1, h, w, "bilinear", True)[0, 1:].view(h, w, -1)
                   for h, w in sizes if h and w}
        if sizes == {(gh, gw)}:
            return resized[gh, gw].reshape(1, gh * gw, -1)
        out = table.new_zeros(valid.shape[0], gh, gw, table.shape[-1])
        for b, (h, w) in enumerate(zip(heights, widths)):
            if h and w:
                out[b, :h, :w] = resized[h, w]
        return out.flatten(1, 2)

    def _draw(self, row: torch.Tensor) -> torch.Tensor:
        """One image's kept patch indices (grid order), drawn as transformers draws them for that image alone."""
        index = row.nonzero()[:, 0]
        v, limit = index.numel(), self.max_image_length
        if v == 0:
            raise ValueError("pixel_mask covers every patch of an image; each image needs some real pixels.")
        n = v if not isinstance(limit, int) or limit < 0 else min(v, limit)
        choice = torch.multinomial(torch.ones(v), n)  # the CPU generator, so that seeds match transformers'
        return index if n == v else index[choice.sort().values.to(index.device)]


class ViltModel(nn.Module):
    def __init__(self, c: ViltConfig):
        super().__init__()
        self.embeddings = ViltEmbeddings(c)
        self.encoder = PreNormEncoder(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size,
                                      c.hidden_act, c.layer_norm_eps, c.qkv_bias)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.pooler = Pooler(c.hidden_size, c.hidden_size)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, pixel_values=None,
                pixel_mask=None) -> VisionOutput:
        if pixel_values is None:
            raise ValueError("ViLT needs `pixel_values` with its `input_ids`.")
        x, mask = self.embeddings(input_ids, attention_mask, token_type_ids, pixel_values, pixel_mask)
        x = self.layernorm(self.encoder(x, padding_mask(mask, x.dtype)))  # (B, T + 1 + N, C)
        return VisionOutput(x, self.pooler(x))


class ViltForQuestionAnswering(nn.Module):
    """The pooled first token → Linear(C, 2C) → LayerNorm → GELU → Linear(2C, answers): (B, num_labels) logits."""

    def __init__(self, c: ViltConfig):
        super().__init__()
        C = c.hidden_size
        self.vilt = ViltModel(c)
        # results depend on torch's generator (a random subset of patches): pipelines keep draws in input order
        self.samples_patches = isinstance(c.max_image_length, int) and c.max_image_length >= 0
        self.classifier = nn.Sequential(Linear(C, 2 * C), nn.LayerNorm(2 * C), nn.GELU(),
                                        Linear(2 * C, c.num_labels))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, pixel_values=None,
                pixel_mask=None) -> torch.Tensor:
        return self.classifier(self.vilt(input_ids, attention_mask, token_type_ids, pixel_values,
                                         pixel_mask).pooler_output)


FAMILY = Family("vilt", ViltConfig, ("visual-question-answering",), lambda c, head: ViltForQuestionAnswering(c),
                lambda c, head: WeightMap(), lambda c: "vilt",
                input_names=("input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask"),
                max_tokens=lambda c: c.max_position_embeddings)
