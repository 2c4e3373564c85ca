"""table-question-answering parity with transformers 4.57.6: TAPAS WTQ (aggregation), SQA (none, sequential) and
WikiSQL-style (aggregation, absolute positions, a 6-row cell index) tiny checkpoints.

The oracle runs with `tapas_oracle.run_on_pandas3()` (its tokenizer crashes on pandas 3 otherwise) and is given
object-typed DataFrames; transformers cannot batch TAPAS at all, so ours at batch_size > 1 is compared with its
unbatched answers.
"""

from __future__ import annotations

import pytest
import torch

from parity.compare import assert_plain_json, assert_same
from parity.tapas_oracle import run_on_pandas3

ARCHS = ["tapas-wtq", "tapas-sqa", "tapas-wikisql"]
HEAD = "table-question-answering"

TABLES = [
    {"Name": ["Alice", "Bob", "Carol", "Dan"], "Age": ["23", "31", "", "47"],
     "Born": ["March 3, 1990", "1985", "12 June 2001", "n/a"], "Score": ["1,200.5", "7", "3rd", "-2"]},
    {"City": ["Paris", "Berlin", "Rome"], "Founded": ["52 BC", "1237", "753 BC"],
     "Population (m)": ["2.1", "3.6", "2.8"], "Date": ["2010-05-04", "August 2007", "2006"]},
    {"Year": ["1999", "2001", "1999", "2015", "2003"],
     "Event": ["first flight", "second launch; twelve people", "?", "-", ""],
     "When": ["Jan 5", "5 February", "Sept 12, 2003", "Monday, March 3", "12.05.2003"]},
    {"word": [" ", "ünïcödé Straße", "supercalifragilistic expialidocious", "hello-world_foo"],
     "n": ["one", "two", "three", "eleven"], "empty": ["", "", "", ""]},
]
# over the 128-token limit of the fixtures' tokenizer: drop_rows_to_fit trims cells, then drops rows
LONG = {"Team": [f"team number {i} of the northern league" for i in range(14)],
        "Points": [str(7 * i % 23) for i in range(14)], "Founded": [str(1900 + 5 * i) for i in range(14)]}
QUERIES = ["how old is bob?", "what happened after 2001 and before 12 June 2001?", "more than 2.5 million",
           "is it one or the 3rd", "which one has the most points", "?"]


def _frame(table):
    import pandas as pd

    return pd.DataFrame(table, dtype=object)


@pytest.fixture(scope="module")
def oracle_ready():
    run_on_pandas3()


@pytest.fixture(params=ARCHS)
def pair(request, checkpoint, pipelines, oracle_ready):
    return pipelines(HEAD, checkpoint(request.param, HEAD))


def _theirs(theirs, table, query, **kwargs):
    return theirs(table=_frame(table), query=query, **kwargs)


@pytest.mark.parametrize("table", TABLES + [LONG], ids=lambda t: next(iter(t)))
def test_one_query_at_a_time(pair, table):
    theirs, ours = pair
    for query in QUERIES:
        result = ours(table=table, query=query)
        assert_same(result, _theirs(theirs, table, query))
        assert_plain_json(result)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_several_queries_and_tables(pair, batch_size):
    theirs, ours = pair
    items = [{"table": t, "query": QUERIES[i % 3: i % 3 + 3]} for i, t in enumerate(TABLES)]
    items += [{"table": LONG, "query": QUERIES[4]}, {"table": TABLES[0], "query": QUERIES[:1]}]
    expected = [theirs({"table": _frame(item["table"]), "query": item["query"]}) for item in items]
    assert_same(ours(items, batch_size=batch_size), expected)
    lazy = ours((item for item in items), batch_size=batch_size)
    assert not isinstance(lazy, list)
    assert_same(list(lazy), expected)


def test_one_call_per_table_equals_unbatched(pair):
    """At batch_size 1 a table's queries (tokenised lengths differing) run in one padded model call; each answer
    equals transformers' answer to that query alone."""
    theirs, ours = pair
    table, queries = TABLES[0], [QUERIES[0], QUERIES[1], QUERIES[5]]
    lengths = {len(e["input_ids"]) for e in ours.preprocess({"table": table, "query": queries})["encodings"]}
    assert len(lengths) == 3
    calls = []
    hook = ours.model.register_forward_hook(lambda module, args, kwargs, output: calls.append(len(output.logits)),
                                            with_kwargs=True)
    try:
        got = ours(table=table, query=queries)
    finally:
        hook.remove()
    assert calls == [3]
    assert_same(got, [_theirs(theirs, table, query) for query in queries])


@pytest.mark.parametrize("batch_size", [1, 3])
def test_sequential(pair, batch_size):
    theirs, ours = pair
    items = [{"table": t, "query": QUERIES[:4]} for t in TABLES[:3]] + [{"table": LONG, "query": QUERIES[3:]}]
    expected = [theirs({"table": _frame(item["table"]), "query": item["query"]}, sequential=True) for item in items]
    assert_same(ours(items, sequential=True, batch_size=batch_size), expected)
    assert_same(ours(table=TABLES[0], query=QUERIES[:4], sequential=True), expected[0])


def test_input_forms(pair):
    import pandas as pd

    theirs, ours = pair
    table, query = TABLES[1], QUERIES[2]
    expected = _theirs(theirs, table, query)
    assert_same(ours(table, query), expected)
    assert_same(ours({"table": table, "query": query}), expected)
    assert_same(ours([{"table": table, "query": query}]), expected)  # a one-item list gives one answer
    assert_same(ours(table=table, query=[query]), expected)
    assert_same(ours(table=pd.DataFrame(table), query=query), expected)  # pandas' own dtypes (str under pandas 3)
    assert_same(ours(table=pd.DataFrame(table, dtype=object), query=query), expected)
    assert_same(ours(table=table, query=query, padding="max_length"), expected)  # padding never changes answers


@pytest.mark.parametrize("truncation", [True, False, "drop_rows_to_fit", "do_not_truncate"])
def test_truncation(pair, truncation):
    theirs, ours = pair
    for query in QUERIES[3:5]:
        assert_same(ours(table=LONG, query=query, truncation=truncation),
                    _theirs(theirs, LONG, query, truncation=truncation))


def test_answers_differ_by_question(pair):
    """The fixtures select cells and aggregate differently per table and question (the parity tests can fail)."""
    _, ours = pair
    answers = [ours(table=t, query=q) for t in TABLES for q in QUERIES]
    assert len({str(a["coordinates"]) for a in answers}) > 3
    assert any(not a["coordinates"] for a in answers) or any(len(a["coordinates"]) == 1 for a in answers) or \
        len({len(a["coordinates"]) for a in answers}) > 2
    if "aggregator" in answers[0]:
        assert len({a["aggregator"] for a in answers}) > 1


@pytest.mark.parametrize("arch", ARCHS)
def test_model_logits(arch, checkpoint, oracle_ready):
    """Our TAPAS on transformers' tokenizer output equals TapasForQuestionAnswering (table tokens, padded batch)."""
    import transformers

    import inferline

    path = checkpoint(arch, HEAD)
    tokenizer = transformers.TapasTokenizer.from_pretrained(path)
    theirs = transformers.TapasForQuestionAnswering.from_pretrained(path).eval()
    ours = inferline.pipeline(HEAD, model=str(path), device="cpu").model
    inputs = tokenizer(_frame(TABLES[2]), QUERIES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = theirs(**inputs)
        result = ours(**inputs)
    table = inputs["token_type_ids"][..., 0] == 1
    assert_same(result.logits[table], expected.logits[table])
    assert (result.logits[table] > -1000).any() and (result.logits[table] < -1000).any()  # a column was chosen
    if expected.logits_aggregation is not None:
        assert_same(result.logits_aggregation, expected.logits_aggregation)
    else:
        assert result.logits_aggregation is None
    one = {k: v[:1, : int(inputs["attention_mask"][0].sum())] for k, v in inputs.items()}  # unpadded: every token
    with torch.inference_mode():
        assert_same(ours(**one).logits, theirs(**one).logits)


@pytest.mark.parametrize("table", TABLES + [LONG], ids=lambda t: next(iter(t)))
@pytest.mark.parametrize("truncation", [True, False])
def test_token_type_channels(table, truncation, checkpoint, oracle_ready):
    """All seven channels (and the ids) equal transformers' TapasTokenizer's, with and without truncation."""
    import transformers

    from inferline.processing.table import TableTokenizer, as_table
    from inferline.processing.tokenizer import Tokenizer

    path = checkpoint("tapas-wtq", HEAD)
    theirs = transformers.TapasTokenizer.from_pretrained(path)
    ours = TableTokenizer(Tokenizer.from_pretrained(path))
    expected = theirs(_frame(table), QUERIES, truncation="drop_rows_to_fit" if truncation else False)
    for i, encoding in enumerate(ours.encode(as_table(table), QUERIES, truncation=truncation)):
        assert encoding["input_ids"].tolist() == expected["input_ids"][i], QUERIES[i]
        assert encoding["token_type_ids"].tolist() == expected["token_type_ids"][i], QUERIES[i]
        assert encoding["attention_mask"].tolist() == expected["attention_mask"][i]


@pytest.mark.parametrize("options", [{"cell_trim_length": 2}, {"max_question_length": 4}, {"min_question_length": 6},
                                     {"strip_column_names": True}, {"model_max_length": 60}], ids=str)
def test_token_types_with_tokenizer_options(options, checkpoint, oracle_ready):
    import transformers

    from inferline.processing.table import TableTokenizer, as_table
    from inferline.processing.tokenizer import Tokenizer

    path = checkpoint("tapas-wtq", HEAD)
    theirs = transformers.TapasTokenizer.from_pretrained(path, **options)
    tokenizer = Tokenizer.from_pretrained(path)
    tokenizer.config.update(options)
    ours = TableTokenizer(tokenizer)
    for table in (LONG, TABLES[2]):
        expected = theirs(_frame(table), QUERIES, truncation=True)
        for i, encoding in enumerate(ours.encode(as_table(table), QUERIES, truncation=True)):
            assert encoding["input_ids"].tolist() == expected["input_ids"][i], QUERIES[i]
            assert encoding["token_type_ids"].tolist() == expected["token_type_ids"][i], QUERIES[i]


TEXTS = ["1,200.5 points on March 3, 1990", "the 3rd of twelve", "Sept 12, 2003", "in the 1990s", "1650",
         "monday, march 3", "12.05.2003 or 05-12-2003", "-3 and +4.5 and .5", "first second 21st", "1e5 inf nan",
         "august 2007", "2010-05-04", "2010-05", "52 bc", "zero one two ten twelve thirteen", "june 31, 2001"]


@pytest.mark.parametrize("text", TEXTS)
def test_numbers_and_dates(text):
    """Spans and values equal transformers' parse_text (the original TAPAS number_utils)."""
    from transformers.models.tapas import tokenization_tapas as tt

    from inferline.processing.table_numbers import normalize_for_match, parse_text

    def plain(value):
        if value.float_value is not None:
            return value.float_value
        d = value.date
        return tuple(None if v is None else float(v) for v in (d.year, d.month, d.day))

    text = normalize_for_match(text)
    expected = [((s.begin_index, s.end_index), [plain(v) for v in s.values]) for s in tt.parse_text(text)]
    assert parse_text(text) == expected


ERRORS = [
    (dict(table={"a": ["1", "2"], "b": ["x"]}, query="q"), ValueError, "different lengths"),
    (dict(table={}, query="q"), ValueError, "no columns"),
    (dict(table={"a": [], "b": []}, query="q"), ValueError, "no rows"),
    (dict(table={"a": ["1"]}), ValueError, "query"),
    (dict(table={"a": ["1"]}, query=""), ValueError, "empty"),
    (dict(table={"a": ["1"]}, query=["ok", "  "]), ValueError, "empty"),
    (dict(table={"a": ["1"]}, query=[]), ValueError, "empty list"),
    (dict(table={"a": ["1"]}, query=3), TypeError, "string"),
    (dict(table={"a": [1, 2]}, query="q"), TypeError, "astype"),
    (dict(table={"a": "12"}, query="q"), TypeError, "list of cell strings"),
    (dict(table=None, query="q"), ValueError, "table"),
    (dict(table=["a", "b"], query="q"), TypeError, "dict of column name"),
    (dict(table={"a": ["1"]}, query="q", truncation="longest_first"), ValueError, "drop_rows_to_fit"),
    (dict(table={"a": ["1"]}, query="q", padding="sideways"), ValueError, "padding"),
    (dict(table={"a": ["1"]}, query="q", sequential="yes"), TypeError, "sequential"),
    (dict(table={"a": ["1"]}, query="q", top_k=2), TypeError, "top_k"),
]


@pytest.mark.parametrize("kwargs, error, match", ERRORS, ids=[e[2] for e in ERRORS])
def test_errors(kwargs, error, match, checkpoint):
    import inferline

    ours = inferline.pipeline(HEAD, model=str(checkpoint("tapas-sqa", HEAD)), device="cpu")
    with pytest.raises(error, match=match):
        ours(**kwargs)


def test_too_many_rows_without_truncation(checkpoint):
    import inferline

    ours = inferline.pipeline(HEAD, model=str(checkpoint("tapas-wtq", HEAD)), device="cpu")
    table = {"n": [str(i) for i in range(200)]}
    with pytest.raises(ValueError, match="max_row_id"):
        ours(table=table, query="which", truncation=False)
    assert ours(table=table, query="which")["cells"] is not None  # drop_rows_to_fit keeps the first rows


def test_too_long_for_absolute_positions(checkpoint):
    """Without truncation, a sequence past the positions of a model with absolute ones is a ValueError (transformers
    4.57.6 fails inside the position embedding with an IndexError)."""
    import inferline

    ours = inferline.pipeline(HEAD, model=str(checkpoint("tapas-wikisql", HEAD)), device="cpu")
    table = {k: v * 4 for k, v in LONG.items()}
    with pytest.raises(ValueError, match="truncation=True"):
        ours(table=table, query="which", truncation=False)
    assert ours(table=table, query="which")["coordinates"] is not None
