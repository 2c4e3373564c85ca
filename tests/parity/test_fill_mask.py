"""fill-mask parity with transformers 4.57.6, over every encoder architecture."""

from __future__ import annotations

import logging

import pytest

from parity.archs import ENCODER_ARCHS as ARCHS
from parity.compare import assert_plain_json, assert_same

# "{m}" stands for the checkpoint's own mask token.
ONE_MASK = "Paris is the {m} of France."
TWO_MASKS = "The {m} sat on the {m} all day."
TEXTS = [ONE_MASK, "Hugging Face is a company based in New York {m}.", "{m}",
         "A much longer sentence about the weather, which is {m} today in the city of London."]
PUNCTUATION = ["Hello{m}!", "It was great ({m}), really.", "{m}, said the man.", "Is it {m}?"]


@pytest.fixture(params=ARCHS)
def pair(request, checkpoint, pipelines):
    return pipelines("fill-mask", checkpoint(request.param, "masked-lm"))


def fill(pair, texts):
    mask = pair[1].tokenizer.mask_token
    return texts.format(m=mask) if isinstance(texts, str) else [t.format(m=mask) for t in texts]


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 2}, {"top_k": 1}], ids=str)
@pytest.mark.parametrize("text", [ONE_MASK, TWO_MASKS, *PUNCTUATION])
def test_single(pair, text, kwargs):
    theirs, ours = pair
    text = fill(pair, text)
    result = ours(text, **kwargs)
    assert_same(result, theirs(text, **kwargs))
    assert_plain_json(result)


def test_two_masks_give_one_list_per_mask(pair):
    theirs, ours = pair
    result = ours(fill(pair, TWO_MASKS), top_k=3)
    assert len(result) == 2 and all(len(row) == 3 for row in result)


def test_targets_in_vocabulary(pair):
    theirs, ours = pair
    targets = theirs.tokenizer.tokenize(" the city of capital")  # in-vocabulary tokens for this tokenizer
    for text in (ONE_MASK, TWO_MASKS):
        text = fill(pair, text)
        assert_same(ours(text, targets=targets), theirs(text, targets=targets))
        assert_same(ours(text, targets=targets[0]), theirs(text, targets=targets[0]))
        # top_k is capped at the number of (distinct) targets
        assert_same(ours(text, targets=targets + targets, top_k=50), theirs(text, targets=targets + targets, top_k=50))


def test_targets_out_of_vocabulary(pair, caplog):
    theirs, ours = pair
    targets = ["zzzqqq", "Londonish", "Paris"]
    text = fill(pair, ONE_MASK)
    expected = theirs(text, targets=targets, top_k=2)
    with caplog.at_level(logging.WARNING, logger="inferline"):
        result = ours(text, targets=targets, top_k=2)
    assert_same(result, expected)
    assert "zzzqqq" in caplog.text and "not in the model vocabulary" in caplog.text


@pytest.mark.parametrize("batch_size", [1, 8])
def test_list_batched_and_generator(pair, batch_size):
    theirs, ours = pair
    texts = fill(pair, TEXTS + [TWO_MASKS] + PUNCTUATION) * 2
    expected = theirs(texts, top_k=3, batch_size=1)
    result = ours(texts, top_k=3, batch_size=batch_size)
    assert_same(result, expected)
    assert_same(result, ours(texts, top_k=3, batch_size=1))  # batched == unbatched
    assert_same(result, theirs(texts, top_k=3, batch_size=batch_size))
    lazy = ours((t for t in texts), top_k=3, batch_size=batch_size)
    assert not isinstance(lazy, list)
    assert_same(list(lazy), expected)


def test_one_element_list_is_unwrapped(pair):
    theirs, ours = pair
    for text in (ONE_MASK, TWO_MASKS):
        text = fill(pair, text)
        assert_same(ours([text]), theirs([text]))
        assert_same(ours([text]), ours(text))


def test_parameters_at_construction(pair):
    import inferline

    theirs, ours = pair
    path = ours.model.checkpoint_dir
    built = inferline.pipeline("fill-mask", model=str(path), top_k=2)
    text = fill(pair, ONE_MASK)
    assert_same(built(text), theirs(text, top_k=2))
    assert_same(built(text, top_k=3), theirs(text, top_k=3))  # call time wins


def test_tokenizer_kwargs(pair):
    theirs, ours = pair
    text = fill(pair, ONE_MASK)
    kwargs = {"tokenizer_kwargs": {"truncation": True, "max_length": 64}}
    assert_same(ours(text, **kwargs), theirs(text, **kwargs))


def test_long_input_truncated_with_warning(pair, caplog):
    """transformers crashes past the position table; we cut to the model limit and warn once."""
    _, ours = pair
    text = fill(pair, ONE_MASK) + " and more words" * 200
    with caplog.at_level(logging.WARNING, logger="inferline"):
        assert len(ours(text, top_k=2)) == 2
    assert "truncated" in caplog.text
    with pytest.raises(ValueError, match="tokens long"):
        ours(text, tokenizer_kwargs={"truncation": False})


@pytest.mark.parametrize("bad, error, match", [
    ("There is no mask here.", ValueError, "No mask token"),
    ("", ValueError, "empty"),
    (None, ValueError, "None"),
    (42, TypeError, "string"),
])
def test_bad_inputs(pair, bad, error, match):
    _, ours = pair
    with pytest.raises(error, match=match):
        ours(bad)


def test_no_mask_error_names_the_mask_token(pair):
    _, ours = pair
    with pytest.raises(ValueError) as info:
        ours(["Paris is nice.", fill(pair, ONE_MASK)])
    assert ours.tokenizer.mask_token in str(info.value)


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True])
def test_bad_top_k(pair, top_k):
    """transformers returns [] for top_k=0 and crashes on the others; a clear error is more useful."""
    _, ours = pair
    with pytest.raises(ValueError, match="top_k"):
        ours(fill(pair, ONE_MASK), top_k=top_k)


def test_bad_targets(pair):
    _, ours = pair
    with pytest.raises(ValueError, match="targets"):
        ours(fill(pair, ONE_MASK), targets=[])
    with pytest.raises(TypeError, match="targets"):
        ours(fill(pair, ONE_MASK), targets=[1, 2])
