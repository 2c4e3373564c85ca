"""zero-shot-classification parity with transformers 4.57.6, over every encoder architecture and BART."""

from __future__ import annotations

import logging

import pytest

from parity.archs import ENCODER_ARCHS
from parity.compare import assert_plain_json, assert_same

ARCHS = ENCODER_ARCHS + [a for a in ["bart"] if a not in ENCODER_ARCHS]  # bart: the task default's family
NLI = dict(id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
           label2id={"contradiction": 0, "neutral": 1, "entailment": 2})
TEXT = "I love this movie! It was absolutely wonderful."
TEXTS = [TEXT, "The weather today is terrible.", "Paris",
         "Hugging Face is a company based in New York City and Paris. Its headquarters are in Manhattan."]
LABELS = ["cinema", "weather", "travel"]
CALLS = [
    {"candidate_labels": LABELS},
    {"candidate_labels": "cinema, weather ,, travel,"},
    {"candidate_labels": LABELS, "multi_label": True},
    {"candidate_labels": ["cinema"]},
    {"candidate_labels": "cinema"},
    {"candidate_labels": LABELS, "hypothesis_template": "The topic here is {}!"},
]


@pytest.fixture(params=ARCHS)
def pair(request, checkpoint, pipelines):
    return pipelines("zero-shot-classification", checkpoint(request.param, "sequence-classification", **NLI))


@pytest.mark.parametrize("kwargs", CALLS, ids=str)
def test_single(pair, kwargs):
    theirs, ours = pair
    result = ours(TEXT, **kwargs)
    assert_same(result, theirs(TEXT, **kwargs))
    assert_plain_json(result)


def test_labels_as_second_positional_argument(pair):
    theirs, ours = pair
    assert_same(ours(TEXT, LABELS), theirs(TEXT, LABELS))
    assert_same(ours(TEXT, "cinema,travel", multi_label=True), theirs(TEXT, "cinema,travel", multi_label=True))


@pytest.mark.parametrize("batch_size", [1, 8])
def test_list_batched(pair, batch_size):
    theirs, ours = pair
    expected = theirs(TEXTS * 2, candidate_labels=LABELS)
    result = ours(TEXTS * 2, candidate_labels=LABELS, batch_size=batch_size)
    assert_same(result, expected)
    assert_plain_json(result)
    lazy = ours((t for t in TEXTS), candidate_labels=LABELS, batch_size=batch_size, multi_label=True)
    assert not isinstance(lazy, list)
    assert_same(list(lazy), theirs(TEXTS, candidate_labels=LABELS, multi_label=True))


def test_many_labels_one_sequence_batched(pair):
    """One sequence's labels are batched together with batch_size > 1 (issue #13), same result as one by one."""
    theirs, ours = pair
    labels = ["cinema", "weather", "travel and holidays", "sport", "politics in Europe", "food", "art", "music",
              "science and technology", "money"]
    expected = theirs(TEXTS[3], candidate_labels=labels)
    assert_same(ours(TEXTS[3], candidate_labels=labels, batch_size=4), expected)
    assert_same(ours(TEXTS[3], candidate_labels=labels, batch_size=1), expected)


def test_long_sequence_truncates_premise_only(checkpoint):
    """The premise is cut to the model's limit (ONLY_FIRST); transformers cuts to the tokenizer's, so give
    its tokenizer our limit to compare (the fixtures' tokenizers allow more than the tiny models take)."""
    import transformers

    import inferline
    from inferline.pipelines.text import model_token_limit

    path = checkpoint("bert", "sequence-classification", **NLI)
    ours = inferline.pipeline("zero-shot-classification", model=str(path), device="cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), model_max_length=model_token_limit(ours))
    theirs = transformers.pipeline("zero-shot-classification", model=str(path), tokenizer=tokenizer, device="cpu")
    text = " ".join(TEXTS * 20)
    assert_same(ours(text, candidate_labels=LABELS, batch_size=2), theirs(text, candidate_labels=LABELS))


@pytest.mark.parametrize("labels", [
    {"id2label": {0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}},  # no entailment label: id -1, with a warning
    {"id2label": {0: "Entailment", 1: "neutral", 2: "contradiction"},
     "label2id": {"Entailment": 0, "neutral": 1, "contradiction": 2}},  # entailment 0 → contradiction is -1
], ids=["no-entailment", "entailment-first"])
def test_label_layouts(checkpoint, labels, caplog):
    import transformers

    import inferline

    labels.setdefault("label2id", {v: k for k, v in labels["id2label"].items()})
    path = checkpoint("bert", "sequence-classification", **labels)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    theirs = transformers.pipeline("zero-shot-classification", model=str(path), device="cpu")
    with caplog.at_level(logging.WARNING, logger="inferline"):
        ours = inferline.pipeline("zero-shot-classification", model=str(path), device="cpu")
    warned = any("entail" in r.getMessage() for r in caplog.records)
    assert warned == ("NEGATIVE" in labels["id2label"].values())
    for kwargs in ({"candidate_labels": LABELS}, {"candidate_labels": LABELS, "multi_label": True},
                   {"candidate_labels": "cinema"}):
        assert_same(ours(TEXTS[:2], **kwargs), theirs(TEXTS[:2], **kwargs))


def test_construction_time_parameters(checkpoint, pipelines):
    path = checkpoint("bert", "sequence-classification", **NLI)
    construction = dict(candidate_labels=LABELS, multi_label=True, hypothesis_template="It is about {}.")
    theirs, fixed = pipelines("zero-shot-classification", path, **construction)
    assert_same(fixed(TEXT), theirs(TEXT))
    assert_same(fixed(TEXT, multi_label=False), theirs(TEXT, multi_label=False))  # call time wins
    assert_same(fixed(TEXTS[:2], candidate_labels=["cinema"]), theirs(TEXTS[:2], candidate_labels=["cinema"]))
    plain_theirs, plain = pipelines("zero-shot-classification", path)
    with pytest.warns(UserWarning, match="multi_class"):
        assert_same(plain(TEXT, candidate_labels=LABELS, multi_class=True),
                    plain_theirs(TEXT, candidate_labels=LABELS, multi_class=True))


@pytest.fixture(scope="module")
def ours(checkpoint):
    import inferline

    return inferline.pipeline("zero-shot-classification", model=str(checkpoint("bert", "sequence-classification",
                                                                                **NLI)), device="cpu")


@pytest.mark.parametrize("call, error, match", [
    (lambda p: p(TEXT, candidate_labels=[]), ValueError, "candidate_labels"),
    (lambda p: p(TEXT, candidate_labels=""), ValueError, "candidate_labels"),
    (lambda p: p(TEXT, candidate_labels=" , ,"), ValueError, "candidate_labels"),
    (lambda p: p(TEXT), ValueError, "candidate_labels"),
    (lambda p: p(TEXT, candidate_labels=None), ValueError, "candidate_labels"),
    (lambda p: p(TEXT, candidate_labels=3), TypeError, "candidate_labels"),
    (lambda p: p(TEXT, candidate_labels=LABELS, hypothesis_template="This example is about it."), ValueError,
     "hypothesis_template"),
    # transformers raises KeyError from str.format here; we say what the template needs.
    (lambda p: p(TEXT, candidate_labels=LABELS, hypothesis_template="About {label}."), ValueError,
     "hypothesis_template"),
    (lambda p: p(TEXT, candidate_labels=LABELS, hypothesis_template=5), TypeError, "hypothesis_template"),
    (lambda p: p("", candidate_labels=LABELS), ValueError, "sequences"),
    (lambda p: p(None, candidate_labels=LABELS), ValueError, "inputs"),
    (lambda p: p(42, candidate_labels=LABELS), TypeError, "sequences"),
    (lambda p: p([TEXT, None], candidate_labels=LABELS), TypeError, "sequences"),
    (lambda p: p([], candidate_labels=LABELS), ValueError, "empty"),
    (lambda p: p(TEXT, LABELS, "extra"), ValueError, "positional"),
    (lambda p: p(TEXT, LABELS, candidate_labels=LABELS), ValueError, "positional"),
    # transformers silently ignores unknown keywords; we name them, so a typo is not lost.
    (lambda p: p(TEXT, candidate_labels=LABELS, multilabel=True), TypeError, "multilabel"),
    (lambda p: p(TEXT, candidate_labels=["x " * 200], hypothesis_template="{}"), ValueError, "hypothesis"),
])
def test_errors(ours, call, error, match):
    with pytest.raises(error, match=match):
        call(ours)


def test_template_errors_match_transformers(pair):
    theirs, ours = pair
    for pipe in (ours, theirs):
        with pytest.raises(ValueError):
            pipe(TEXT, candidate_labels=LABELS, hypothesis_template="No placeholder.")
        with pytest.raises(ValueError):
            pipe(TEXT, candidate_labels=[])
