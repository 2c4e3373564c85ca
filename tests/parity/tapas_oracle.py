"""transformers 4.57.6's TAPAS tokenizer on pandas 3, as an oracle.

Under pandas 3 its tokenizer crashes twice on any table: `row[col_index]` (a positional lookup by integer
on a row labelled by column names, removed in pandas 3) and `table.iloc[r, c] = Cell(...)` into a string
column (pandas 3's str dtype takes only strings). `run_on_pandas3()` makes both work without changing what
they compute: the lookup positional (`row.iloc[col_index]`) and the annotated copy object-typed. On pandas 2
it changes nothing that runs. The pipeline's own results are not touched.

It also makes transformers' argument handler work on a copy of each {"table", "query"} dict: it writes its
DataFrame into the caller's dict, which a test then cannot send again (nor as JSON).
"""

from __future__ import annotations

import itertools

_DONE = []


def run_on_pandas3() -> None:
    if _DONE:
        return
    from transformers.models.tapas import tokenization_tapas as tt

    annotate = tt.add_numeric_table_values

    def column_values(table, col_index):  # tt._get_column_values with a positional lookup
        return {row_index: list(itertools.chain(*(s.values for s in tt.parse_text(
            tt.normalize_for_match(row.iloc[col_index].text))))) for row_index, row in table.iterrows()}

    def numeric_column_values(self, table, col_index):  # TapasTokenizer._get_column_values, positional
        return {row_index: row.iloc[col_index].numeric_value for row_index, row in table.iterrows()
                if row.iloc[col_index].numeric_value is not None}

    tt._get_column_values = column_values
    tt.TapasTokenizer._get_column_values = numeric_column_values
    tt.add_numeric_table_values = lambda table, *args, **kwargs: annotate(table.astype(object), *args, **kwargs)

    from transformers.pipelines import table_question_answering as tqa

    handle = tqa.TableQuestionAnsweringArgumentHandler.__call__

    def copied(self, table=None, query=None, **kwargs):
        if isinstance(table, dict):
            table = dict(table)
        elif isinstance(table, list):
            table = [dict(t) if isinstance(t, dict) else t for t in table]
        return handle(self, table, query, **kwargs)

    tqa.TableQuestionAnsweringArgumentHandler.__call__ = copied
    _DONE.append(True)
