"""text-classification parity with transformers 4.57.6, over every encoder architecture."""

from __future__ import annotations

import pytest

from parity.compare import assert_plain_json, assert_same

from parity.archs import ENCODER_ARCHS as ARCHS
TEXTS = ["I love this movie! It was absolutely wonderful.", "The weather today is terrible.",
         "Paris", "Hugging Face is a company based in New York City and Paris. Its headquarters are in Manhattan."]
CALLS = [
    {},
    {"top_k": None},
    {"top_k": 2},
    {"top_k": 1},
    {"function_to_apply": "sigmoid"},
    {"function_to_apply": "none", "top_k": None},
    {"return_all_scores": True},
]


@pytest.fixture(params=ARCHS)
def pair(request, checkpoint, pipelines):
    return pipelines("text-classification", checkpoint(request.param, "sequence-classification"))


@pytest.mark.parametrize("kwargs", CALLS, ids=str)
def test_single_and_list(pair, kwargs):
    theirs, ours = pair
    assert_same(ours(TEXTS[0], **kwargs), theirs(TEXTS[0], **kwargs))
    result = ours(TEXTS, **kwargs)
    assert_same(result, theirs(TEXTS, **kwargs))
    assert_plain_json(result)


@pytest.mark.parametrize("batch_size", [1, 8])
def test_batched_and_generator(pair, batch_size):
    theirs, ours = pair
    expected = theirs(TEXTS * 3, top_k=None)
    assert_same(ours(TEXTS * 3, top_k=None, batch_size=batch_size), expected)
    lazy = ours((t for t in TEXTS * 3), top_k=None, batch_size=batch_size)
    assert not isinstance(lazy, list)
    assert_same(list(lazy), expected)


def test_text_pair(pair):
    theirs, ours = pair
    item = {"text": "Where do you live?", "text_pair": "I live in London."}
    assert_same(ours(item), theirs(item))
    assert_same(ours([item, item], top_k=None), theirs([item, item], top_k=None))


def test_function_to_apply_default_accepted(pair):
    """transformers documents "default" but raises KeyError on it; we accept it (the documented behaviour)."""
    theirs, ours = pair
    assert_same(ours(TEXTS[0], function_to_apply="default"), theirs(TEXTS[0]))


@pytest.mark.parametrize("kwargs", [{"truncation": True, "max_length": 6}, {"truncation": "longest_first", "max_length": 9},
                                    {"truncation": True, "max_length": 6, "top_k": None}], ids=str)
def test_truncation_and_max_length(pair, kwargs):
    theirs, ours = pair
    assert len(ours.tokenizer.encode(TEXTS[3])[0].ids) > kwargs["max_length"]  # the cut changes the input
    assert_same(ours(TEXTS[3], **kwargs), theirs(TEXTS[3], **kwargs))
    assert_same(ours(TEXTS, batch_size=4, **kwargs), theirs(TEXTS, **kwargs))
    item = {"text": TEXTS[3], "text_pair": TEXTS[0]}
    room = len(ours.tokenizer.encode(item["text"], item["text_pair"])[0].ids) - 4  # either side can give 4 tokens
    for truncation in (kwargs["truncation"], "only_first", "only_second"):
        call = {**kwargs, "truncation": truncation, "max_length": room}
        assert_same(ours(item, **call), theirs(item, **call))


def test_truncating_the_wrong_side_is_a_clear_error(checkpoint, pipelines):
    _, ours = pipelines("text-classification", checkpoint("bert", "sequence-classification"))
    item = {"text": TEXTS[3], "text_pair": TEXTS[2]}  # the pair is one word: it cannot give up 10 tokens
    # transformers lets the Rust tokenizer's bare Exception escape here; we name the parameters instead
    with pytest.raises(ValueError, match="max_length"):
        ours(item, truncation="only_second", max_length=10)
