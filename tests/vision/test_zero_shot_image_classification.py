"""zero-shot-image-classification parity with transformers 4.57.6: CLIP (softmax) and SigLIP (sigmoid,
texts padded to 64 tokens), as each model declares."""

from __future__ import annotations

import pytest

from fixtures.images import variety
from fixtures.vision_checkpoints import build_vision
from parity.compare import assert_plain_json, assert_same

pytest.importorskip("PIL.Image")
IMAGES = variety(5)
LABELS = ["a cat", "a dog", "a red car on a long road", "trees"]


@pytest.fixture(params=["clip", "siglip"])
def pair(request, pipelines):
    return pipelines("zero-shot-image-classification", build_vision(request.param, "zero-shot-image-classification"))


@pytest.mark.parametrize("kwargs", [{}, {"hypothesis_template": "A picture of {}"}], ids=str)
def test_single_and_list(pair, kwargs):
    theirs, ours = pair
    assert_same(ours(IMAGES[0], candidate_labels=LABELS, **kwargs),
                theirs(IMAGES[0], candidate_labels=LABELS, **kwargs))
    result = ours(IMAGES[:3], candidate_labels=LABELS[:2], **kwargs)
    assert_same(result, theirs(IMAGES[:3], candidate_labels=LABELS[:2], **kwargs))
    assert_plain_json(result)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_and_generator(pair, batch_size):
    theirs, ours = pair
    expected = theirs(IMAGES, candidate_labels=LABELS)
    assert_same(ours(IMAGES, candidate_labels=LABELS, batch_size=batch_size), expected)
    assert_same(list(ours(iter(IMAGES), candidate_labels=LABELS, batch_size=batch_size)), expected)


def test_one_label(pair):
    theirs, ours = pair
    assert_same(ours(IMAGES[1], candidate_labels=["cat"]), theirs(IMAGES[1], candidate_labels=["cat"]))


def test_comma_string_labels_are_split(pair):
    """transformers 4.57.6 iterates a string by character; we split it on commas, as zero-shot-classification does."""
    theirs, ours = pair
    assert_same(ours(IMAGES[0], candidate_labels="a cat, a dog ,trees"),
                theirs(IMAGES[0], candidate_labels=["a cat", "a dog", "trees"]))


def test_missing_labels(pair):
    _, ours = pair
    with pytest.raises(ValueError, match="candidate_labels"):
        ours(IMAGES[0])
    with pytest.raises(ValueError, match="empty"):
        ours(IMAGES[0], candidate_labels=[])
