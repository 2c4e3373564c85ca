"""token-classification (ner) parity with transformers 4.57.6, over every encoder architecture.

The tiny checkpoints have random weights, so most tokens get a non-O label and every aggregation
strategy has plenty to merge.
"""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from parity.archs import ENCODER_ARCHS as ARCHS
from parity.compare import assert_plain_json, assert_same

TASK = "token-classification"
STRATEGIES = ["none", "simple", "first", "average", "max"]
TEXTS = ["Hugging Face Inc. is a company based in New York City. Its headquarters are in DUMBO.",
         "Café  naïve  résumé — Zoë's  über-cool   déjà vu!!! (really?)",
         "Paris",
         "My name is Wolfgang and I live in Berlin, Germany."]
LONG = " ".join(TEXTS)  # 55-125 tokens: several windows of 32
WORDS = [["Wolfgang", "lives", "in", "Berlin", "."], ["Zoë", "naïve", "New", "York"]]


# transformers' RobertaTokenizerFast refuses pre-split words unless built with add_prefix_space=True: the
# is_split_into_words tests run RoBERTa on a checkpoint whose tokenizer is.
PRE_SPLIT = {"roberta": "roberta-prefix-space"}


@pytest.fixture(params=ARCHS)
def pair(request, checkpoint, pipelines):
    return pipelines(TASK, checkpoint(request.param, "token-classification"))


@pytest.fixture(params=ARCHS)
def split_pair(request, checkpoint, pipelines):
    return pipelines(TASK, checkpoint(PRE_SPLIT.get(request.param, request.param), "token-classification"))


def _short_pair(checkpoint, arch):
    """Pipelines whose tokenizers take 32 tokens, so texts run past the window (transformers' window is
    tokenizer.model_max_length)."""
    import transformers

    import inferline

    logging.getLogger("transformers").setLevel(logging.ERROR)
    path = str(checkpoint(arch, "token-classification"))
    theirs, ours = transformers.pipeline("ner", model=path, device="cpu"), inferline.pipeline("ner", model=path)
    theirs.tokenizer.model_max_length = ours.tokenizer.model_max_length = 32
    return theirs, ours


@pytest.fixture(scope="module", params=ARCHS)
def short_pair(request, checkpoint):
    return _short_pair(checkpoint, request.param)


@pytest.fixture(scope="module", params=ARCHS)
def short_split_pair(request, checkpoint):
    return _short_pair(checkpoint, PRE_SPLIT.get(request.param, request.param))


def quiet(pipe, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe(*args, **kwargs)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies(pair, strategy):
    theirs, ours = pair
    result = quiet(ours, TEXTS[:2], aggregation_strategy=strategy)
    assert_same(result, quiet(theirs, TEXTS[:2], aggregation_strategy=strategy))
    assert_plain_json(result)
    json.dumps(result)  # transformers' numpy.float32 scores are not JSON-serialisable; ours are floats
    if strategy in ("none", "first"):
        kept = quiet(ours, TEXTS[2], aggregation_strategy=strategy, ignore_labels=[])
        assert_same(kept, quiet(theirs, TEXTS[2], aggregation_strategy=strategy, ignore_labels=[]))


def test_default_is_none_and_labels_ignored(pair):
    theirs, ours = pair
    assert_same(ours(TEXTS[3]), theirs(TEXTS[3]))
    assert_same(ours(TEXTS[3], ignore_labels=["O", "B-ORG", "I-ORG"]),
                theirs(TEXTS[3], ignore_labels=["O", "B-ORG", "I-ORG"]))
    assert all(set(e) == {"entity", "score", "index", "word", "start", "end"} for e in ours(TEXTS[3]))


def test_strategy_names_are_case_insensitive_and_enums_accepted(pair):
    from transformers.pipelines.token_classification import AggregationStrategy

    theirs, ours = pair
    expected = quiet(theirs, TEXTS[0], aggregation_strategy="max")
    assert_same(quiet(ours, TEXTS[0], aggregation_strategy="MAX"), expected)
    assert_same(quiet(ours, TEXTS[0], aggregation_strategy=AggregationStrategy.MAX), expected)


def test_batched_equals_unbatched(pair):
    theirs, ours = pair
    expected = quiet(theirs, TEXTS, aggregation_strategy="average")
    for batch_size in (1, 8):
        assert_same(quiet(ours, TEXTS, aggregation_strategy="average", batch_size=batch_size), expected)
        lazy = quiet(ours, (t for t in TEXTS), aggregation_strategy="average", batch_size=batch_size)
        assert not isinstance(lazy, list)
        assert_same(quiet(list, lazy), expected)


def test_construction_time_parameters(pair):
    import inferline

    theirs, _ = pair
    path = theirs.model.name_or_path
    ours = inferline.pipeline(TASK, model=path, aggregation_strategy="first", ignore_labels=[])
    expected = quiet(theirs, TEXTS[1], aggregation_strategy="first", ignore_labels=[])
    assert_same(quiet(ours, TEXTS[1]), expected)
    assert_same(quiet(ours, TEXTS[1], aggregation_strategy="none"), quiet(theirs, TEXTS[1], ignore_labels=[]))


def test_split_into_words(split_pair):
    theirs, ours = split_pair
    for inputs, kwargs in ((WORDS[0], {}), (WORDS, {}), (WORDS, {"delimiter": "_"}),
                           (WORDS, {"aggregation_strategy": "first"})):
        result = quiet(ours, inputs, is_split_into_words=True, **kwargs)
        assert_same(result, quiet(theirs, inputs, is_split_into_words=True, **kwargs))
        sentence = kwargs.get("delimiter", " ").join(WORDS[0])
        # offsets point into the words joined by the delimiter (RoBERTa's lone "Ġ" before "." spans nothing)
        assert all(0 <= e["start"] <= e["end"] <= len(sentence) for e in result[0])


def test_offset_mapping(pair):
    theirs, ours = pair
    n = len(ours.tokenizer.encode(TEXTS[2])[0].ids)
    mapping = [(0, 0)] + [(i, i + 2) for i in range(n - 2)] + [(0, 0)]
    assert_same(ours(TEXTS[2], offset_mapping=mapping), theirs(TEXTS[2], offset_mapping=mapping))
    # A list of inputs takes one mapping each (transformers applies the first mapping to every input).
    assert_same(ours([TEXTS[2], TEXTS[2]], offset_mapping=[mapping, mapping]),
                [theirs(TEXTS[2], offset_mapping=mapping)] * 2)


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_stride_windows(short_pair, strategy):
    theirs, ours = short_pair
    for stride in (8, 0) if strategy == "simple" else (8,):
        result = quiet(ours, LONG, stride=stride, aggregation_strategy=strategy)
        assert_same(result, quiet(theirs, LONG, stride=stride, aggregation_strategy=strategy))
        assert result[-1]["end"] > len(LONG) // 2  # the windows reach past what one window holds


def test_stride_split_into_words(short_split_pair):
    theirs, ours = short_split_pair
    words = LONG.split()
    result = quiet(ours, words, is_split_into_words=True, stride=6, aggregation_strategy="first")
    assert result[0][-1]["end"] > len(LONG) // 2
    assert_same(result, quiet(theirs, words, is_split_into_words=True, stride=6, aggregation_strategy="first"))


def test_roberta_without_prefix_space_refuses_pre_split_words_like_transformers(checkpoint, pipelines):
    theirs, ours = pipelines(TASK, checkpoint("roberta", "token-classification"))
    with pytest.raises(AssertionError, match="add_prefix_space=True"):
        theirs(WORDS[0], is_split_into_words=True)
    result = ours(WORDS[0], is_split_into_words=True)  # ours tokenises each word as the tokenizer is configured
    assert_same(result, quiet(ours, WORDS[:1], is_split_into_words=True))


def test_stride_batched(short_pair):
    theirs, ours = short_pair
    inputs = [LONG, TEXTS[2], LONG[::-1]]
    expected = [quiet(theirs, t, stride=8, aggregation_strategy="first") for t in inputs]
    for batch_size in (1, 8):
        assert_same(quiet(ours, inputs, stride=8, aggregation_strategy="first", batch_size=batch_size), expected)


def test_stride_without_strategy_dedupes_tokens(short_pair):
    theirs, ours = short_pair
    assert_same(quiet(ours, LONG, stride=8), quiet(theirs, LONG, stride=8))


def test_long_text_without_stride_is_truncated(short_pair, caplog):
    theirs, ours = short_pair
    with caplog.at_level(logging.WARNING, logger="inferline"):
        result = quiet(ours, LONG, aggregation_strategy="simple")
    assert_same(result, quiet(theirs, LONG, aggregation_strategy="simple"))  # transformers cuts silently
    assert "truncated" in caplog.text


@pytest.mark.parametrize("legacy, strategy", [({"grouped_entities": True}, "simple"),
                                              ({"grouped_entities": True, "ignore_subwords": True}, "first"),
                                              ({"grouped_entities": False}, "none")])
def test_legacy_grouped_entities(pair, legacy, strategy):
    theirs, ours = pair
    with pytest.warns(UserWarning, match="grouped_entities.* is deprecated"):
        result = ours(TEXTS[0], **legacy)
    assert_same(result, quiet(theirs, TEXTS[0], aggregation_strategy=strategy))
    assert_same(result, quiet(theirs, TEXTS[0], **legacy))


@pytest.mark.parametrize("bad, error, match", [
    (None, ValueError, "needs inputs"),
    (42, TypeError, "must be a string"),
    ([["a"], 3], TypeError, "must be a string"),
])
def test_bad_inputs(pair, bad, error, match):
    _, ours = pair
    with pytest.raises(error, match=match):
        ours(bad)


def test_empty_string_is_an_error(pair):
    # Deliberate: transformers returns [] for ""; an empty input is almost always a caller bug, so we raise.
    theirs, ours = pair
    assert theirs("") == []
    with pytest.raises(ValueError, match="empty"):
        ours("")


def test_bad_parameters(pair):
    _, ours = pair
    with pytest.raises(ValueError, match="none, simple, first, average, max.*'bogus'"):
        ours(TEXTS[0], aggregation_strategy="bogus")
    with pytest.raises(ValueError, match="stride"):
        ours(TEXTS[0], stride=8, aggregation_strategy="none")
    with pytest.raises(ValueError, match="stride"):
        ours(TEXTS[0], stride=-1)
    with pytest.raises(TypeError, match="ignore_labels"):
        ours(TEXTS[0], ignore_labels="O")
    with pytest.raises(TypeError, match="Unknown parameter"):
        ours(TEXTS[0], top_k=3)
    with pytest.raises(ValueError, match="offset_mapping"):
        ours([TEXTS[0], TEXTS[1]], offset_mapping=[[(0, 1)]])


def test_stride_must_fit_the_window(short_pair):
    _, ours = short_pair
    for stride in (32, 31):  # the whole window, or more than the window leaves beside special tokens
        with pytest.raises(ValueError, match=f"stride={stride}"):
            ours(LONG, stride=stride, aggregation_strategy="simple")
