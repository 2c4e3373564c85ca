"""question-answering parity with transformers 4.57.6, over every encoder architecture."""

from __future__ import annotations

import warnings

import pytest

from parity.archs import ENCODER_ARCHS as ARCHS
from parity.compare import assert_plain_json, assert_same

from inferline.pipelines.text import model_token_limit

QUESTION = "Where does Sarah live?"
CONTEXT = "My name is Sarah and I live in London. The weather there is often rainy."
# ~80 tokens: with max_seq_len=48 / doc_stride=16 it spans several overlapping windows.
LONG_CONTEXT = ("Hugging Face is a company based in New York City and Paris. Its headquarters are in Manhattan. "
                "Sarah moved to London in 2019 after working in Berlin for three years. She likes the museums, the "
                "parks along the river and the small bakeries near her flat. Her brother still lives in Madrid, "
                "where the weather is warm and sunny for most of the year.")
WINDOWS = {"max_seq_len": 48, "doc_stride": 16}
ITEMS = [{"question": QUESTION, "context": CONTEXT},
         {"question": "What is the weather like?", "context": CONTEXT},
         {"question": "Where is Hugging Face based?", "context": LONG_CONTEXT},
         {"question": "Who?", "context": "Sarah lives in London with her brother."},
         {"question": "Which city has warm weather most of the year?", "context": LONG_CONTEXT[:200]}]

CALLS = [
    {},
    {"top_k": 3},
    {"handle_impossible_answer": True},
    {"handle_impossible_answer": True, "top_k": 4},
    {"align_to_words": False, "top_k": 3},
    {"max_answer_len": 2, "top_k": 3},
    {"max_answer_len": 1},
]


@pytest.fixture(params=ARCHS)
def pair(request, checkpoint, pipelines):
    return pipelines("question-answering", checkpoint(request.param, "question-answering"))


@pytest.mark.parametrize("kwargs", CALLS, ids=str)
def test_single(pair, kwargs):
    theirs, ours = pair
    result = ours(question=QUESTION, context=CONTEXT, **kwargs)
    assert_same(result, theirs(question=QUESTION, context=CONTEXT, **kwargs))
    assert_plain_json(result)


@pytest.mark.parametrize("kwargs", [{"top_k": 3}, {"handle_impossible_answer": True, "align_to_words": False,
                                                "top_k": 2}], ids=str)
def test_long_context_in_windows(pair, kwargs):
    theirs, ours = pair
    assert len(ours.tokenizer.encode(QUESTION, LONG_CONTEXT)[0].ids) > 1.5 * WINDOWS["max_seq_len"]
    result = ours(question=QUESTION, context=LONG_CONTEXT, **WINDOWS, **kwargs)
    assert_same(result, theirs(question=QUESTION, context=LONG_CONTEXT, **WINDOWS, **kwargs))
    assert_plain_json(result)


def test_input_forms(pair):
    theirs, ours = pair
    expected = theirs(question=QUESTION, context=CONTEXT)
    assert_same(ours(QUESTION, CONTEXT), expected)
    assert_same(ours({"question": QUESTION, "context": CONTEXT}), expected)
    assert_same(ours([{"question": QUESTION, "context": CONTEXT}]), expected)  # a one-item list gives one result
    assert_same(ours(question=[QUESTION], context=CONTEXT), expected)
    questions = [QUESTION, "What is the weather like?"]
    assert_same(ours(question=questions, context=CONTEXT), theirs(question=questions, context=CONTEXT))
    assert_same(ours(question=questions, context=[CONTEXT, CONTEXT[:40]], top_k=2),
                theirs(question=questions, context=[CONTEXT, CONTEXT[:40]], top_k=2))
    assert_same(ours(ITEMS[0], ITEMS[1]), theirs(ITEMS[0], ITEMS[1]))
    with pytest.warns(FutureWarning):
        assert_same(ours(X=ITEMS[:2]), theirs(X=ITEMS[:2]))
    with pytest.warns(FutureWarning):
        assert_same(ours(data=ITEMS[0]), expected)
    with pytest.warns(UserWarning, match="topk"):
        assert_same(ours(QUESTION, CONTEXT, topk=2), theirs(question=QUESTION, context=CONTEXT, top_k=2))


def test_list_and_generator(pair):
    theirs, ours = pair
    expected = theirs(ITEMS, top_k=2, **WINDOWS)
    for batch_size in (1, 8):  # batched == unbatched == transformers
        result = ours(ITEMS, top_k=2, batch_size=batch_size, **WINDOWS)
        assert_same(result, expected)
        assert_plain_json(result)
    lazy = ours((item for item in ITEMS), top_k=2, batch_size=8, **WINDOWS)
    assert not isinstance(lazy, list)
    assert_same(list(lazy), expected)


def test_parameters_at_construction(pair):
    import inferline

    theirs, _ = pair
    path = theirs.model.name_or_path
    ours = inferline.pipeline("question-answering", model=path, device="cpu", top_k=2, max_answer_len=3)
    assert_same(ours(question=QUESTION, context=CONTEXT),
                theirs(question=QUESTION, context=CONTEXT, top_k=2, max_answer_len=3))
    assert_same(ours(question=QUESTION, context=CONTEXT, top_k=1),  # call-time parameters win
                theirs(question=QUESTION, context=CONTEXT, max_answer_len=3))


def test_context_without_the_answer(pair):
    _, ours = pair
    context = "The museum opens at nine and closes at five on weekdays."
    result = ours(question="What is Sarah's favourite colour?", context=context)
    assert set(result) == {"score", "start", "end", "answer"}
    assert 0 <= result["start"] < result["end"] <= len(context) and result["answer"] == context[
        result["start"]:result["end"]]
    assert 0 < result["score"] <= 1


def test_max_seq_len_capped_to_the_model(pair):
    theirs, ours = pair
    # Deliberate: transformers passes windows longer than the model's positions to the model and crashes; we cap
    # max_seq_len to the model's limit, which is what transformers answers when given that limit.
    limit = model_token_limit(ours)
    context = " ".join([LONG_CONTEXT] * (limit // 64 + 1))
    assert len(ours.tokenizer.encode(QUESTION, context)[0].ids) > limit
    assert_same(ours(question=QUESTION, context=context, max_seq_len=4 * limit, top_k=3),
                theirs(question=QUESTION, context=context, max_seq_len=limit, top_k=3))


@pytest.mark.parametrize("max_question_len", [2, 64])
def test_max_question_len(pair, max_question_len):
    """transformers' fast-tokenizer path accepts max_question_len and cuts nothing with it."""
    theirs, ours = pair
    kwargs = {"max_question_len": max_question_len, "top_k": 2}
    assert_same(ours(question=QUESTION, context=CONTEXT, **kwargs), theirs(question=QUESTION, context=CONTEXT, **kwargs))
    assert_same(ours(ITEMS[:3], **WINDOWS, **kwargs), theirs(ITEMS[:3], **WINDOWS, **kwargs))


def test_short_context_returns_only_real_spans(pair):
    theirs, ours = pair
    # Deliberate: transformers pads top_k with zero-score spans (some end before they start); we don't.
    as_list = lambda r: r if isinstance(r, list) else [r]  # noqa: E731  (one answer comes back as a dict)
    expected = [a for a in as_list(theirs(question=QUESTION, context="London", top_k=10)) if a["score"] > 0]
    assert_same(as_list(ours(question=QUESTION, context="London", top_k=10)), expected)


def test_question_after_context_for_left_padding(checkpoint):
    import inferline

    ours = inferline.pipeline("question-answering", model=str(checkpoint("bert", "question-answering")), device="cpu")
    ours.tokenizer.padding_side = "left"
    # Deliberate: transformers then masks nothing (its p_mask is all zeros); we still only answer from the context.
    for result in ours(question=QUESTION, context=CONTEXT, top_k=5):
        assert result["answer"] == CONTEXT[result["start"]:result["end"]] and result["end"] > result["start"]


ERRORS = {
    "empty question": (lambda p: p(question="", context=CONTEXT), ValueError),
    "empty context": (lambda p: p(question=QUESTION, context=""), ValueError),
    # Deliberate: transformers answers a blank context with "" at score 0; we reject it like an empty one.
    "blank context": (lambda p: p(question=QUESTION, context="   "), ValueError),
    "missing context": (lambda p: p(question=QUESTION), ValueError),
    "dict without context": (lambda p: p({"question": QUESTION}), ValueError),
    "None question": (lambda p: p({"question": None, "context": CONTEXT}), ValueError),
    "None context": (lambda p: p(question=QUESTION, context=None), ValueError),
    "None input": (lambda p: p(None), ValueError),
    "no input": (lambda p: p(), ValueError),
    "int question": (lambda p: p(question=123, context=CONTEXT), TypeError),
    "int context": (lambda p: p({"question": QUESTION, "context": 5}), TypeError),
    "bare string": (lambda p: p("just a string"), TypeError),
    "length mismatch": (lambda p: p(question=[QUESTION, QUESTION], context=[CONTEXT]), ValueError),
    "top_k 0": (lambda p: p(question=QUESTION, context=CONTEXT, top_k=0), ValueError),
    "max_answer_len 0": (lambda p: p(question=QUESTION, context=CONTEXT, max_answer_len=0), ValueError),
    "doc_stride > max_seq_len": (lambda p: p(question=QUESTION, context=CONTEXT, doc_stride=60, max_seq_len=50),
                                 ValueError),
    # transformers: a Rust panic (pyo3 PanicException) inside the tokenizer.
    "doc_stride > room": (lambda p: p(question=QUESTION, context=LONG_CONTEXT, max_seq_len=30, doc_stride=25),
                          ValueError),
    "question fills window": (lambda p: p(question=QUESTION * 8, context=LONG_CONTEXT, max_seq_len=30), ValueError),
    "unknown parameter": (lambda p: p(question=QUESTION, context=CONTEXT, temperature=1.0), TypeError),
    "inputs given twice": (lambda p: p(QUESTION, CONTEXT, question=QUESTION), TypeError),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors(pair, case):
    _, ours = pair
    call, error = ERRORS[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error) as info:
            call(ours)
    assert str(info.value)
