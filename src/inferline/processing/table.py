"""A table and a question → TAPAS model inputs: the flattened table and its seven token-type channels.

The semantics of transformers 4.57.6's `TapasTokenizer` over our WordPiece `Tokenizer`: [CLS] question [SEP]
then the table row by row (header first), cell by cell; per token the channels segment, column, row,
previous answer, column rank, inverse column rank and numeric relation (processing/table_numbers.py).
Truncation `drop_rows_to_fit` first trims every cell to the most whole words that fit, then drops rows
from the end until one word per cell fits. The TAPAS options come from tokenizer_config.json
(cell_trim_length, max_row_id, max_column_id, strip_column_names, min/max_question_length).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import torch

from . import table_numbers as numbers

CHANNELS = ("segment_ids", "column_ids", "row_ids", "prev_labels", "column_ranks", "inv_column_ranks",
            "numeric_relations")
EMPTY_TEXT = "EMPTY"


@dataclass
class Table:
    """Column names and rows of cell strings (every row as long as the header)."""

    header: list[str]
    rows: list[list[str]]

    def cell(self, row: int, column: int) -> str:
        return self.rows[row][column]


def as_table(value: Any, name: str = "table") -> Table:
    """A dict of equal-length lists of strings, or a pandas DataFrame (pandas 2 or 3) of strings → Table."""
    if isinstance(value, Table):
        return value
    if hasattr(value, "columns") and hasattr(value, "itertuples"):  # a DataFrame, read without importing pandas
        header = list(value.columns)
        rows = [list(row) for row in value.itertuples(index=False, name=None)]
    elif isinstance(value, dict):
        header = list(value)
        columns = [value[k] for k in header]
        for key, column in zip(header, columns):
            if isinstance(column, (str, bytes)) or not hasattr(column, "__len__"):
                raise TypeError(f"`{name}` column {key!r} must be a list of cell strings; got "
                                f"{type(column).__name__}: {column!r:.60}.")
        lengths = {key: len(column) for key, column in zip(header, columns)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"`{name}` has columns of different lengths {lengths}; every column needs one cell "
                             f"per row.")
        rows = [list(cells) for cells in zip(*columns)]
    elif value is None:
        raise ValueError(f"`{name}` is None; give a dict of column name → list of cell strings, or a DataFrame.")
    else:
        raise TypeError(f"`{name}` must be a dict of column name → list of cell strings, or a pandas DataFrame; got "
                        f"{type(value).__name__}.")
    if not header:
        raise ValueError(f"`{name}` is empty: it has no columns.")
    if not rows:
        raise ValueError(f"`{name}` is empty: columns {header!r:.80} have no rows.")
    for column in header:
        if not isinstance(column, str):
            raise TypeError(f"`{name}` column names must be strings; got {type(column).__name__} {column!r}. "
                            f"Rename the columns (DataFrame: df.columns = df.columns.astype(str)).")
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            if not isinstance(cell, str):
                raise TypeError(f"`{name}` cells must be strings; row {r}, column {header[c]!r} holds "
                                f"{type(cell).__name__} {cell!r:.40}. Convert the table to text first (DataFrame: "
                                f"df.fillna('').astype(str)).")
    return Table(header, rows)


def format_text(text: str) -> str:
    """Lower-cased, punctuation replaced by spaces; EMPTY for text with no word in it (and n/a, ?, nan)."""
    text = text.lower().strip()
    if text in ("n/a", "?", "nan"):
        text = EMPTY_TEXT
    text = " ".join(re.sub(r"[^\w\d]+", " ", text).replace("_", " ").split()).strip()
    return text or EMPTY_TEXT


@dataclass
class _Annotated:
    """One table, tokenised and annotated once for all its questions."""

    tokens: list[list[list[int]]]  # [row][column] → token ids (row 0: the header)
    begins: list[list[list[int]]]  # [row][column] → per token, the index of its word's first piece
    ranks: dict[tuple[int, int], tuple[int, int]]  # (column, data row) → (rank, inverse rank)
    columns: list[dict[int, numbers.Value]]  # per column: data row → consolidated value
    cumulative: list[list[int]]  # [r][n]: tokens of rows 0..r when each cell keeps the words starting before n
    longest: int  # most tokens in one cell


class TableTokenizer:
    """TAPAS inputs over a WordPiece `Tokenizer` whose tokenizer_config.json carries the TAPAS options."""

    def __init__(self, tokenizer):
        config = tokenizer.config
        self.tokenizer = tokenizer
        limit = config.get("model_max_length")
        self.model_max_length = int(limit) if isinstance(limit, (int, float)) and limit < 1e30 else 512
        self.cell_trim_length = int(config.get("cell_trim_length", -1))
        self.max_column_id = config.get("max_column_id") or self.model_max_length
        self.max_row_id = config.get("max_row_id") or self.model_max_length
        self.strip_column_names = bool(config.get("strip_column_names", False))
        self.min_question_length = config.get("min_question_length")
        self.max_question_length = config.get("max_question_length")
        empty = config.get("empty_token", "[EMPTY]")
        self.empty_token = empty.get("content") if isinstance(empty, dict) else empty
        self.empty_id = tokenizer.convert_tokens_to_ids(self.empty_token)
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id

    # ----- tokens -----
    def tokenize(self, texts: list[str]) -> list[tuple[list[int], list[int]]]:
        """Each text → (token ids, index of each token's word start), in one Rust call for all."""
        out: list = [None] * len(texts)
        todo = []
        for i, text in enumerate(texts):
            if not text:
                out[i] = ([], [])  # TAPAS's tokenizer skips empty text: an empty cell has no token at all
            elif format_text(text) == EMPTY_TEXT:
                out[i] = ([self.empty_id], [0])
            else:
                todo.append(i)
        encodings = self.tokenizer.encode_batch([unicodedata.normalize("NFC", texts[i]) for i in todo],
                                                add_special_tokens=False) if todo else []
        for i, (encoding,) in zip(todo, encodings):
            begins, start = [], -1
            for t, token in enumerate(encoding.tokens):
                if not token.startswith("##"):
                    start = t
                begins.append(start)
            out[i] = (list(encoding.ids), begins)
        return out

    def _annotate(self, table: Table) -> _Annotated:
        width = len(table.header)
        header = ["" if self.strip_column_names else h for h in table.header]
        pieces = self.tokenize(header + [cell for row in table.rows for cell in row])
        grid = [pieces[r * width:(r + 1) * width] for r in range(len(table.rows) + 1)]
        tokens = [[ids for ids, _ in row] for row in grid]
        begins = [[b for _, b in row] for row in grid]
        longest = max((len(ids) for row in tokens for ids in row), default=0)
        cumulative, total = [], [0] * (longest + 2)
        for row in begins:
            for cell in row:
                for begin in cell:  # a token is kept with n tokens per cell when its word starts before n
                    for n in range(begin + 1, longest + 2):
                        total[n] += 1
            cumulative.append(list(total))
        columns = [numbers.consolidate([numbers.text_values(row[c]) for row in table.rows]) for c in range(width)]
        ranks = {(c, row): rank for c, column in enumerate(columns)
                 for row, rank in numbers.column_ranks(column).items()}
        return _Annotated(tokens, begins, ranks, columns, cumulative, longest)

    # ----- truncation -----
    def _words_per_cell(self, table: _Annotated, question_length: int, rows: int, max_length: int) -> int | None:
        """The most tokens per cell (whole words) with which rows 0..rows fit, or None when not even one does."""
        budget = max_length - (question_length + 2)  # [CLS] and [SEP]
        most = table.longest
        if 0 <= self.cell_trim_length < most:
            most = self.cell_trim_length
        n = 0
        for n in range(most + 1):
            if table.cumulative[rows][n + 1] > budget:
                break
        if n < most and (self.cell_trim_length >= 0 or n == 0):
            return None
        return n

    def _fit(self, table: _Annotated, question_length: int, rows: int, max_length: int) -> tuple[int, int]:
        while True:
            n = self._words_per_cell(table, question_length, rows, max_length)
            if n is not None:
                return rows, n or 1
            rows -= 1
            if rows < 1:
                return rows, 1

    # ----- encoding -----
    def encode(self, table: Table, queries: list[str], truncation: bool = True,
               max_length: int | None = None) -> list[dict[str, torch.Tensor]]:
        """One dict of 1-D input_ids / attention_mask and (T, 7) token_type_ids per query."""
        annotated = self._annotate(table)
        width, height = len(table.header), len(table.rows)
        if width >= self.max_column_id:
            raise ValueError(f"The table has {width} columns; this tokenizer takes fewer than {self.max_column_id} "
                             f"(max_column_id).")
        if height >= self.max_row_id:
            if not truncation:
                raise ValueError(f"The table has {height} rows; this tokenizer takes fewer than {self.max_row_id} "
                                 f"(max_row_id) without truncation; pass truncation=True to drop the rows after.")
            height = self.max_row_id - 1
        limit = max_length if max_length is not None else self.model_max_length
        out = []
        for query, (ids, _) in zip(queries, self.tokenize(queries)):
            too_long = self.max_question_length is not None and len(ids) > self.max_question_length
            too_short = self.min_question_length is not None and len(ids) < self.min_question_length
            if too_long or too_short:  # as TAPAS: the question is dropped, the table kept
                query, ids = "", []
            rows, per_cell = self._fit(annotated, len(ids), height, limit) if truncation else \
                (height, annotated.longest)
            out.append(self._sequence(annotated, query, ids, rows, per_cell, width))
            if max_length is not None and len(out[-1]["input_ids"]) > max_length:
                raise ValueError(f"The question and the table header take {len(out[-1]['input_ids'])} tokens, more "
                                 f"than max_length={max_length}.")
        return out

    def _sequence(self, table: _Annotated, query: str, question: list[int], rows: int, per_cell: int,
                  width: int) -> dict[str, torch.Tensor]:
        relations = numbers.numeric_relations(numbers.text_values(query), table.columns) if query else {}
        ids = [self.cls_id, *question, self.sep_id]
        types = [[0] * 7 for _ in ids]
        for r in range(rows + 1):
            for c in range(width):
                rank, inverse = table.ranks.get((c, r - 1), (0, 0))
                relation = relations.get((c, r - 1), 0)
                for token, begin in zip(table.tokens[r][c], table.begins[r][c]):
                    if begin < per_cell:
                        ids.append(token)
                        types.append([1, c + 1, r, 0, rank, inverse, relation])
        return {"input_ids": torch.tensor(ids, dtype=torch.long),
                "attention_mask": torch.ones(len(ids), dtype=torch.long),
                "token_type_ids": torch.tensor(types, dtype=torch.long)}
