"""BERT and the families that share its encoder: RoBERTa, XLM-RoBERTa, CamemBERT.

Matches transformers 4.57.6 `modeling_bert` / `modeling_roberta` (absolute position embeddings).
RoBERTa-style models differ only in data: positions count from `pad_token_id + 1` and skip padding,
the classification head has its own dense layer, and the MLM head is called `lm_head`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .heads import HEADS, encoder_head
from .kernels import FastLinear
from .layers import padding_mask
from .post_norm import PostNormEncoder
from .registry import Family, UnsupportedModelError
from .weights import WeightMap

ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert")


@dataclass
class BertConfig(ModelConfig):
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    position_embedding_type: str = "absolute"

    @property
    def roberta_like(self) -> bool:
        return self.model_type in ROBERTA_LIKE


class BertEmbeddings(nn.Module):
    """word + position (+ token-type) embeddings, then LayerNorm.

    Sizes are arguments so other families reuse it: ELECTRA (embedding_size), DistilBERT (no token types:
    type_vocab_size=0), TAPAS (a tuple of sizes: several token-type channels, and its own `position_ids`).
    `position_offset` is RoBERTa's: real tokens are numbered from pad_token_id + 1.
    `layout_positions` (LayoutLM's max_2d_position_embeddings) adds the 2-D layout embeddings of each token's
    box (x0, y0, x1, y1): x/y tables for the corners, h/w tables for its height and width, summed; with
    `layout_widths` (LayoutLMv3's coordinate_size, shape_size) the six are narrower and concatenated.
    """

    def __init__(self, vocab_size: int, size: int, max_positions: int, type_vocab_size: int | tuple[int, ...],
                 eps: float, position_offset: int | None = None, layout_positions: int | None = None,
                 layout_widths: tuple[int, int] | None = None):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, size)
        self.position_embeddings = nn.Embedding(max_positions, size)
        if layout_positions:
            coordinate, shape = layout_widths or (size, size)
            for axis, width in zip("xyhw", (coordinate, coordinate, shape, shape)):
                self.add_module(f"{axis}_position_embeddings", nn.Embedding(layout_positions, width))
        self.layout, self.layout_concat = bool(layout_positions), layout_widths is not None
        channels = type_vocab_size if isinstance(type_vocab_size, tuple) else ()
        self.token_type_embeddings = nn.Embedding(type_vocab_size, size) if type_vocab_size and not channels else None
        for i, n in enumerate(channels):  # TAPAS: one table per token-type channel, token_type_ids (B, T, channels)
            self.add_module(f"token_type_embeddings_{i}", nn.Embedding(n, size))
        self.type_channels = len(channels)
        self.LayerNorm = nn.LayerNorm(size, eps=eps)
        self.position_offset = position_offset

    @classmethod
    def from_config(cls, cfg: BertConfig, size: int | None = None, layout_positions: int | None = None,
                    layout_widths: tuple[int, int] | None = None) -> "BertEmbeddings":
        return cls(cfg.vocab_size, size or cfg.hidden_size, cfg.max_position_embeddings, cfg.type_vocab_size,
                   cfg.layer_norm_eps, cfg.pad_token_id if cfg.roberta_like else None, layout_positions, layout_widths)

    def layout_embeddings(self, bbox: torch.Tensor) -> torch.Tensor:
        """(B, T, 4) boxes (x0, y0, x1, y1) → (B, T, C): both corners, then height and width."""
        x, y = self.x_position_embeddings, self.y_position_embeddings
        height, width = bbox[..., 3] - bbox[..., 1], bbox[..., 2] - bbox[..., 0]
        if self.layout_concat:  # LayoutLMv3 clips sizes to its tables' 1024 rows
            parts = (x(bbox[..., 0]), y(bbox[..., 1]), x(bbox[..., 2]), y(bbox[..., 3]),
                     self.h_position_embeddings(height.clamp(0, 1023)), self.w_position_embeddings(width.clamp(0, 1023)))
            return torch.cat(parts, dim=-1)
        return (x(bbox[..., 0]) + y(bbox[..., 1]) + x(bbox[..., 2]) + y(bbox[..., 3])
                + self.h_position_embeddings(height) + self.w_position_embeddings(width))

    def _positions(self, positions: torch.Tensor | None, start: int, T: int) -> torch.Tensor:
        """(B, T, C) embeddings of these positions, or (T, C) of start..start+T when positions is None."""
        if positions is not None:
            return self.position_embeddings(positions)
        table = self.position_embeddings.weight
        if start + T > table.shape[0]:
            raise ValueError(f"The input reaches position {start + T - 1} but the model has "
                             f"{table.shape[0]} position embeddings; truncate it to {table.shape[0]} tokens.")
        return table[start: start + T]

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                position_ids: torch.Tensor | None = None, start: int = 0,
                bbox: torch.Tensor | None = None) -> torch.Tensor:
        """`start`: the position of the first token (a decoder step after `start` cached tokens: BLIP)."""
        B, T = input_ids.shape
        if position_ids is not None:
            positions = position_ids
        elif self.position_offset is None:
            positions = None  # start..start+T: rows of the table, sliced rather than gathered
        else:
            not_pad = (input_ids != self.position_offset).int()
            positions = torch.cumsum(not_pad, dim=1) * not_pad + self.position_offset
        x = self.word_embeddings(input_ids)
        if self.type_channels:  # summed in transformers' TAPAS order: word, position, then each channel
            x = x + self._positions(positions, start, T)
            if token_type_ids is None:
                token_type_ids = torch.zeros(B, T, self.type_channels, dtype=torch.long, device=input_ids.device)
            for i in range(self.type_channels):
                x = x + self._modules[f"token_type_embeddings_{i}"](token_type_ids[..., i])
            return self.LayerNorm(x)  # (B, T, C)
        if self.token_type_embeddings is not None:  # summed in transformers' order: word, type, position
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(token_type_ids)
        x = x + self._positions(positions, start, T)
        if self.layout:  # LayoutLM: a missing bbox is all-zero boxes, as in transformers
            x = x + self.layout_embeddings(bbox if bbox is not None else input_ids.new_zeros((B, T, 4)))
        return self.LayerNorm(x)  # (B, T, C)


class BertModel(nn.Module):
    """Embeddings → post-norm encoder. ELECTRA's embeddings are `embedding_size` wide, mapped up to
    hidden_size by `embeddings_project` when the two differ; LayoutLM's add 2-D box embeddings
    (`layout_positions`), and then forward takes each token's `bbox`."""

    def __init__(self, cfg: BertConfig, embedding_size: int | None = None, layout_positions: int | None = None):
        super().__init__()
        if cfg.position_embedding_type != "absolute":
            raise UnsupportedModelError(
                f"position_embedding_type {cfg.position_embedding_type!r} is not supported; only 'absolute'.")
        self.embeddings = BertEmbeddings.from_config(cfg, size=embedding_size, layout_positions=layout_positions)
        if embedding_size is not None and embedding_size != cfg.hidden_size:
            self.embeddings_project = FastLinear(embedding_size, cfg.hidden_size)
        self.encoder = PostNormEncoder(cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
                                       cfg.intermediate_size, cfg.hidden_act, cfg.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                bbox=None) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids, position_ids, bbox=bbox)  # (B, T, E)
        if "embeddings_project" in self._modules:
            x = self.embeddings_project(x)  # (B, T, C)
        return self.encoder(x, padding_mask(attention_mask, x.dtype))  # (B, T, C)


def _prefix(cfg: BertConfig) -> str:
    return "roberta" if cfg.roberta_like else "bert"


def build(cfg: BertConfig, head: str) -> nn.Module:
    mlm_name = "lm_head" if cfg.roberta_like else "cls"
    return encoder_head(head, BertModel(cfg), _prefix(cfg), cfg.hidden_size, cfg.num_labels, "tanh",
                        (cfg.hidden_size, cfg.vocab_size, cfg.hidden_act, cfg.layer_norm_eps, mlm_name))


def weight_map(cfg: BertConfig, head: str) -> WeightMap:
    prefix = _prefix(cfg)
    unused = [r"pooler\."]
    renames: list[tuple[str, str]] = []
    tied: dict[str, str] = {}
    if head == "sequence-classification":
        if not cfg.roberta_like:  # BERT's pooler is its classification head's dense layer (RoBERTa's match)
            renames += [(rf"^{prefix}\.pooler\.dense\.", "classifier.dense."),
                        (r"^classifier\.(weight|bias)$", r"classifier.out_proj.\1")]
    elif head == "masked-lm":
        if cfg.roberta_like:
            renames += [(r"^lm_head\.layer_norm\.", "lm_head.LayerNorm.")]
            unused.append(r"^lm_head\.decoder\.bias$")
            tied["lm_head.decoder.weight"] = f"{prefix}.embeddings.word_embeddings.weight"
        else:
            renames += [(r"^cls\.predictions\.transform\.", "cls."), (r"^cls\.predictions\.decoder\.weight$",
                                                                       "cls.decoder.weight"),
                        (r"^cls\.predictions\.bias$", "cls.bias")]
            unused += [r"^cls\.predictions\.decoder\.bias$", r"^cls\.seq_relationship\."]
            tied["cls.decoder.weight"] = f"{prefix}.embeddings.word_embeddings.weight"
    elif head in ("base",):
        unused += [r"^cls\.", r"^lm_head\.", r"^classifier\.", r"^qa_outputs\."]
    return WeightMap(renames, unused, tied)


def _max_tokens(cfg: BertConfig) -> int:
    # RoBERTa's positions start after the padding index, so two rows of its table are never reachable.
    return cfg.max_position_embeddings - (cfg.pad_token_id + 1 if cfg.roberta_like else 0)


def _input_names(cfg: BertConfig) -> tuple[str, ...]:
    # RoBERTa-style tokenizers give the model no token types (transformers sends none); the type ids of a
    # pair's overflowing windows can even hold 1s that a one-row type table cannot take.
    return ("input_ids", "attention_mask") if cfg.roberta_like else ("input_ids", "attention_mask", "token_type_ids")


FAMILY = Family("bert", BertConfig, HEADS, build, weight_map, _prefix, max_tokens=_max_tokens,
                input_names=_input_names)
