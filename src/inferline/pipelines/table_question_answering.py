"""table-question-answering: answer questions about a table with TAPAS (cells, and an aggregator).

>>> tqa = pipeline("table-question-answering", model="google/tapas-base-finetuned-wtq")
>>> table = {"Repository": ["Transformers", "Datasets", "Tokenizers"], "Stars": ["36542", "4512", "3934"]}
>>> tqa(table=table, query="How many stars does the transformers repository have?")
{'answer': 'AVERAGE > 36542', 'coordinates': [(0, 1)], 'cells': ['36542'], 'aggregator': 'AVERAGE'}

Inputs as transformers 4.57.6 takes them: `tqa(table, query)`, `tqa(table=..., query=...)`, a
`{"table", "query"}` dict or a list of them; `table` a dict of lists of strings or a pandas DataFrame
(pandas 2 or 3), `query` a string or a list (a list gives a list of answers). `sequential=True` answers the
queries of a table in order, each seeing the cells the previous one selected (SQA's conversations).
Each query is one model row: at batch_size 1 a table's queries run in one model call (as transformers
does), at batch_size > 1 rows of any tables batch together (transformers cannot batch TAPAS); answers equal
unbatched ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..processing.table import TableTokenizer, as_table
from .base import Pipeline

_PADDING = (True, False, "longest", "max_length", "do_not_pad")
_TRUNCATION = {True: True, "drop_rows_to_fit": True, False: False, "do_not_truncate": False}
_PREVIOUS = 3  # the previous-answer channel of token_type_ids
THRESHOLD = 0.5  # a cell is selected when its mean token probability is above this


def cell_probabilities(logits: torch.Tensor, token_type_ids: torch.Tensor) -> dict[tuple[int, int], float]:
    """(T,) logits, (T, 7) token types → {(row, column): mean probability of its tokens} over the data cells
    (0-based, header excluded), as transformers' convert_logits_to_predictions computes them."""
    segment, column, row = token_type_ids[:, 0], token_type_ids[:, 1] - 1, token_type_ids[:, 2] - 1
    keep = (segment == 1) & (column >= 0) & (row >= 0)
    probs = torch.sigmoid(logits.float().clamp(min=-88.7))[keep].tolist()
    sums: dict[tuple[int, int], list] = {}
    for r, c, p in zip(row[keep].tolist(), column[keep].tolist(), probs):
        sums.setdefault((r, c), []).append(p)
    return {cell: sum(ps) / len(ps) for cell, ps in sums.items()}


class TableQuestionAnsweringPipeline(Pipeline):
    """TAPAS table question answering: `sequential` (False), `padding`, `truncation` (drop_rows_to_fit)."""

    positional_parameters = ("query",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.tokenizer is None:
            raise ValueError("table-question-answering needs the checkpoint's tokenizer (vocab.txt); pass "
                             "`tokenizer=`.")
        self.table_tokenizer = TableTokenizer(self.tokenizer)

    # ----- inputs -----
    def __call__(self, table=None, query=None, **kwargs):
        """`table` + `query`, or `{"table", "query"}` dicts (one, a list, a generator or a dataset)."""
        result = super().__call__(self._items(table, query), **kwargs)
        return result[0] if isinstance(result, list) and len(result) == 1 else result

    @staticmethod
    def _items(table, query):
        if table is None:
            raise ValueError("table-question-answering needs a `table` (a dict of column → cell strings or a "
                             "DataFrame) and a `query`.")
        if query is not None:
            return [{"table": table, "query": query}]
        if isinstance(table, dict) and "table" in table and "query" in table:
            return [table]
        if isinstance(table, (list, tuple)) and table and all(isinstance(t, dict) for t in table):
            return list(table)
        if isinstance(table, Iterator) or (hasattr(table, "__getitem__") and hasattr(table, "__len__")
                                           and not isinstance(table, (dict, list, tuple, str))
                                           and not hasattr(table, "columns")):
            return table  # a generator or a dataset of {"table", "query"} dicts: answered lazily
        raise ValueError("table-question-answering needs a `query` with the table: tqa(table=..., query=...), or "
                         "{'table': ..., 'query': ...} dicts.")

    def _sanitize_parameters(self, sequential=None, padding=None, truncation=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for table-question-answering: {sorted(unknown)}. Accepted: "
                            f"sequential, padding, truncation.")
        preprocess, forward = {}, {}
        if padding is not None and getattr(padding, "value", padding) not in _PADDING:
            raise ValueError(f"`padding` must be one of {_PADDING}; got {padding!r}. (Rows are padded per batch "
                             f"whatever it says: padding never changes an answer.)")
        if truncation is not None:
            value = getattr(truncation, "value", truncation)
            if value not in _TRUNCATION or isinstance(value, int) and not isinstance(value, bool):
                raise ValueError(f"`truncation` must be True / 'drop_rows_to_fit' or False / 'do_not_truncate'; "
                                 f"got {truncation!r}.")
            preprocess["truncation"] = _TRUNCATION[value]
        if sequential is not None:
            if not isinstance(sequential, bool):
                raise TypeError(f"`sequential` must be True or False; got {sequential!r}.")
            forward["sequential"] = sequential
        return preprocess, forward, {}

    def preprocess(self, item, truncation=True) -> dict[str, Any]:
        if not isinstance(item, dict) or "table" not in item:
            raise ValueError(f"Each input must be a {{'table': ..., 'query': ...}} dict; got {type(item).__name__}.")
        table = as_table(item["table"])
        queries = item.get("query")
        queries = [queries] if isinstance(queries, str) else queries
        if not isinstance(queries, (list, tuple)):
            raise TypeError(f"`query` must be a question (a string) or a list of them; got {type(queries).__name__}.")
        if not queries:
            raise ValueError("`query` is an empty list; give a non-empty list of questions.")
        for query in queries:
            if not isinstance(query, str):
                raise TypeError(f"`query` must be a string or a list of strings; got {type(query).__name__}.")
            if not query.strip():
                raise ValueError("`query` is empty; ask a question about the table.")
        encodings = self.table_tokenizer.encode(table, list(queries), truncation=truncation)
        self._check_sizes(encodings)
        return {"encodings": encodings, "table": table}

    def _check_sizes(self, encodings: list[dict]) -> None:
        sizes = self.model.config.type_vocab_sizes
        limit = getattr(self.model, "max_input_tokens", None)
        for encoding in encodings:
            if limit is not None and len(encoding["input_ids"]) > limit:
                raise ValueError(f"The question and table take {len(encoding['input_ids'])} tokens; this model takes "
                                 f"at most {limit}. Pass truncation=True (drop_rows_to_fit) or a smaller table.")
            top = encoding["token_type_ids"].amax(0).tolist()
            for name, value, size in zip(("segment", "column", "row", "previous answer", "column rank",
                                          "inverse column rank", "numeric relation"), top, sizes):
                if value >= size:
                    raise ValueError(f"The table needs {name} id {value}, but this model knows {size} of them; "
                                     f"use a smaller table (or truncation=True).")

    # ----- model -----
    def _forward_window(self, pieces, batch_size, fwd):
        """Every query of every table in the window is a model row; `sequential` runs the k-th queries of all
        tables together, each after its table's (k-1)-th, whose selected cells fill the previous-answer channel."""
        window = super()._forward_window
        if not fwd.get("sequential"):
            if batch_size == 1:  # as transformers: one model call per table, its queries padded to the longest
                outputs = iter([out for p in pieces for out in window(p["encodings"], len(p["encodings"]), {})])
            else:
                outputs = iter(window([e for p in pieces for e in p["encodings"]], batch_size, {}))
            return [{**piece, "outputs": [{**e, **next(outputs)} for e in piece["encodings"]]} for piece in pieces]
        results = [{**piece, "outputs": []} for piece in pieces]
        for step in range(max(len(piece["encodings"]) for piece in pieces)):
            active = [i for i, piece in enumerate(pieces) if step < len(piece["encodings"])]
            rows = []
            for i in active:
                encoding = pieces[i]["encodings"][step]
                if step:
                    encoding = self._with_previous(encoding, results[i]["outputs"][-1])
                rows.append(encoding)
            for i, row, out in zip(active, rows, window(rows, batch_size, {})):
                results[i]["outputs"].append({**row, **out})
        return results

    @staticmethod
    def _with_previous(encoding: dict, previous: dict) -> dict:
        """The encoding with the previous answer's selected cells marked 1 in its previous-answer channel."""
        chosen = {cell for cell, p in cell_probabilities(previous["logits"][0], previous["token_type_ids"]).items()
                  if p > THRESHOLD}
        types = encoding["token_type_ids"].clone()
        for t, (segment, column, row) in enumerate(types[:, :3].tolist()):
            if segment == 1 and column > 0 and row > 0:
                types[t, _PREVIOUS] = int((row - 1, column - 1) in chosen)
        return {**encoding, "token_type_ids": types}

    per_token_outputs = ("logits",)

    def _forward(self, model_inputs):
        out = self.model(**model_inputs)
        result = {"logits": out.logits}
        if out.logits_aggregation is not None:
            result["logits_aggregation"] = out.logits_aggregation
        return result

    # ----- outputs -----
    def postprocess(self, model_outputs):
        table, config = model_outputs["table"], self.model.config
        answers = []
        for out in model_outputs["outputs"]:
            probabilities = cell_probabilities(out["logits"][0], out["token_type_ids"])
            coordinates = sorted(cell for cell, p in probabilities.items() if p > THRESHOLD)
            cells = [table.cell(r, c) for r, c in coordinates]
            answer = {"answer": ", ".join(cells), "coordinates": coordinates, "cells": cells}
            if config.aggregates:
                index = int(out["logits_aggregation"][0].argmax())
                answer["aggregator"] = config.aggregation_labels[index]
                if index != config.no_aggregation_label_index:
                    answer["answer"] = f"{answer['aggregator']} > {answer['answer']}"
            answers.append(answer)
        return answers if len(answers) > 1 else answers[0]
