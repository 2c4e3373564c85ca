"""TAPAS: BERT's encoder over a question and a flattened table, with seven token-type channels.

Matches transformers 4.57.6 `modeling_tapas` at inference. The backbone is `BertModel` with one embedding
table per channel (segment, column, row, previous answer, column rank, inverse rank, numeric relation) and,
with `reset_position_index_per_cell`, positions that restart in every cell. The head of
TapasForQuestionAnswering: token logits averaged per cell; with `select_one_column`, only the cells of the
best column (column logits averaged over its cells) keep theirs, every other token gets -10000; the
aggregation head (WTQ, WikiSQL: NONE / SUM / AVERAGE / COUNT) classifies the pooled first token.
Padding tokens join no cell here, so a row's logits do not depend on how far it was padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from .bert import BertConfig, BertModel
from .heads import ClassificationHead, _WithBackbone
from .registry import Family
from .weights import WeightMap

LOG_ZERO = -10000.0  # transformers' CLOSE_ENOUGH_TO_LOG_ZERO
EPS = 1e-10  # transformers' EPSILON_ZERO_DIVISION
HEAD = "table-question-answering"


@dataclass
class TapasConfig(BertConfig):
    max_position_embeddings: int = 1024
    type_vocab_sizes: tuple = (3, 256, 256, 2, 256, 256, 10)
    reset_position_index_per_cell: bool = True
    max_num_rows: int = 64
    max_num_columns: int = 32
    temperature: float = 1.0
    select_one_column: bool = True
    allow_empty_column_selection: bool = False
    average_logits_per_cell: bool = False
    num_aggregation_labels: int = 0
    aggregation_labels: dict | None = None  # index → name ("NONE", "SUM", "AVERAGE", "COUNT")
    no_aggregation_label_index: int | None = None

    @classmethod
    def merged_keys(cls, config: dict[str, Any]) -> dict[str, Any]:
        merged = super().merged_keys(config)
        sizes = tuple(merged.get("type_vocab_sizes") or cls.type_vocab_sizes)
        labels = merged.get("aggregation_labels")
        return {**merged, "type_vocab_sizes": sizes, "type_vocab_size": sizes,  # BertEmbeddings: one per channel
                "aggregation_labels": {int(k): v for k, v in labels.items()} if labels else None}

    @property
    def aggregates(self) -> bool:
        """Whether answers carry an aggregator: transformers needs both the labels and their count."""
        return bool(self.aggregation_labels) and self.num_aggregation_labels > 0


def cell_positions(token_type_ids: torch.Tensor, sizes: tuple, max_positions: int) -> torch.Tensor:
    """(B, T, 7) token types → (B, T) positions counted from the first token of each token's (column, row)
    cell; `sizes` are the channels' vocabulary sizes (the number of columns and rows)."""
    B, T, _ = token_type_ids.shape
    columns, rows = sizes[1], sizes[2]
    cell = token_type_ids[..., 1] * rows + token_type_ids[..., 2]  # (B, T)
    position = torch.arange(T, device=cell.device).expand(B, T)
    first = torch.full((B, columns * rows), T, dtype=torch.long, device=cell.device)
    first = first.scatter_reduce(1, cell, position, "amin")  # (B, cells): first position of each
    return (position - first.gather(1, cell)).clamp(max=max_positions - 1)


class TapasModel(BertModel):
    """BertModel whose positions restart in every cell (reset_position_index_per_cell)."""

    def __init__(self, cfg: TapasConfig):
        super().__init__(cfg)
        self.reset_positions = cfg.reset_position_index_per_cell
        self.type_sizes = cfg.type_vocab_sizes

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        positions = None
        if self.reset_positions and token_type_ids is not None:
            positions = cell_positions(token_type_ids, self.type_sizes,
                                       self.embeddings.position_embeddings.num_embeddings)
        return super().forward(input_ids, attention_mask, token_type_ids, positions)  # (B, T, C)


class TableLogits(NamedTuple):
    logits: torch.Tensor  # (B, T) cell-selection logit of each token
    logits_aggregation: torch.Tensor | None  # (B, num_aggregation_labels), or None without that head


class TableQuestionAnsweringModel(_WithBackbone):
    """TapasForQuestionAnswering at inference: cell selection (one column) and the optional aggregation."""

    def __init__(self, cfg: TapasConfig):
        super().__init__(TapasModel(cfg), "tapas")
        C = cfg.hidden_size
        self.output_weights = nn.Parameter(torch.zeros(C))
        self.output_bias = nn.Parameter(torch.zeros(()))
        self.column_output_weights = nn.Parameter(torch.zeros(C))
        self.column_output_bias = nn.Parameter(torch.zeros(()))
        # BERT's pooler (tanh of the first token) then aggregation_classifier: the shared sentence head
        self.aggregation = ClassificationHead(C, cfg.num_aggregation_labels, "tanh") \
            if cfg.num_aggregation_labels > 0 else None
        self.cfg = cfg

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> TableLogits:
        hidden = self.tapas(input_ids, attention_mask, token_type_ids)  # (B, T, C)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = self.select_cells(hidden.float(), token_type_ids, attention_mask)
        aggregation = self.aggregation(hidden) if self.aggregation is not None else None
        return TableLogits(logits, aggregation)

    def select_cells(self, hidden: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
                     ) -> torch.Tensor:
        cfg = self.cfg
        B, T, _ = hidden.shape
        R, K = cfg.max_num_rows, cfg.max_num_columns
        rows = token_type_ids[..., 2].clamp(max=R - 1)
        columns = token_type_ids[..., 1].clamp(max=K - 1)
        # (B, T) cell of each token (row-major, as transformers' ProductIndexMap); padding → a spare cell R*K
        cell = torch.where(attention_mask.bool(), rows * K + columns, R * K)
        counts = hidden.new_zeros(B, R * K + 1).scatter_add_(1, cell, torch.ones_like(hidden[..., 0]))

        def per_cell(values: torch.Tensor) -> torch.Tensor:  # (B, T) → (B, R*K) mean over each cell's tokens
            sums = hidden.new_zeros(B, R * K + 1).scatter_add_(1, cell, values)
            return (sums / counts.clamp(min=1))[:, :-1]

        token_logits = (hidden @ self.output_weights.float() + self.output_bias.float()) / cfg.temperature
        if not cfg.select_one_column:  # transformers cannot run this setting; the plain (or per-cell) logits
            if not cfg.average_logits_per_cell:
                return token_logits
            return torch.cat((per_cell(token_logits), token_logits.new_full((B, 1), LOG_ZERO)), 1).gather(1, cell)
        cell_logits = per_cell(token_logits)  # (B, R*K)
        present = (counts[:, :-1] > 0).to(hidden.dtype)  # (B, R*K): cells that have tokens
        column_cells = per_cell(hidden @ self.column_output_weights.float() + self.column_output_bias.float())
        in_column = present.view(B, R, K).sum(1)  # (B, K) cells per column
        column_logits = (column_cells * present).view(B, R, K).sum(1) / (in_column + EPS)
        column_ids = torch.arange(K, device=hidden.device)
        column_logits = column_logits + LOG_ZERO * ((in_column < 0.5) & (column_ids != 0)).to(hidden.dtype)
        if not cfg.allow_empty_column_selection:
            column_logits = column_logits + LOG_ZERO * (column_ids == 0).to(hidden.dtype)
        best = column_logits.argmax(-1)  # (B,)
        cell_column = column_ids.repeat(R)  # (R*K,) column of each cell
        chosen = ((cell_column[None] == best[:, None]) & (cell_column[None] != 0)).to(hidden.dtype)
        selected = cell_logits + LOG_ZERO * (1.0 - present * chosen)  # (B, R*K)
        return torch.cat((selected, selected.new_full((B, 1), LOG_ZERO)), 1).gather(1, cell)  # (B, T)


def build(cfg: TapasConfig, head: str) -> nn.Module:
    if head != HEAD:
        raise ValueError(f"TAPAS offers the {HEAD!r} head only; got {head!r}.")
    return TableQuestionAnsweringModel(cfg)


def weight_map(cfg: TapasConfig, head: str) -> WeightMap:
    if cfg.num_aggregation_labels > 0:
        renames = [(r"^tapas\.pooler\.dense\.", "aggregation.dense."),
                   (r"^aggregation_classifier\.", "aggregation.out_proj.")]
        return WeightMap(renames, [])
    return WeightMap([], [r"^tapas\.pooler\."])  # SQA: no aggregation head reads the pooler


def _max_tokens(cfg: TapasConfig) -> int | None:
    # Positions restarting per cell are clamped to the table (transformers too): any length runs.
    return None if cfg.reset_position_index_per_cell else cfg.max_position_embeddings


FAMILY = Family("tapas", TapasConfig, (HEAD,), build, weight_map, lambda cfg: "tapas", max_tokens=_max_tokens)
