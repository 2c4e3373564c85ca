"""image-classification and image-feature-extraction parity with transformers 4.57.6 over every vision
backbone, on synthetic Pillow images of several sizes and modes."""

from __future__ import annotations

import pytest

from fixtures.images import variety
from fixtures.vision_checkpoints import build_vision
from parity.compare import assert_plain_json, assert_same
from vision.archs import CLASSIFICATION_ARCHS, FEATURE_ARCHS

pytest.importorskip("PIL.Image")
IMAGES = variety(6)
CALLS = [{}, {"top_k": 2}, {"top_k": 100}, {"function_to_apply": "sigmoid"}, {"function_to_apply": "none", "top_k": 3}]


@pytest.fixture(params=CLASSIFICATION_ARCHS)
def classifier(request, pipelines):
    return pipelines("image-classification", build_vision(request.param, "image-classification"))


@pytest.mark.parametrize("kwargs", CALLS, ids=str)
def test_classification(classifier, kwargs):
    theirs, ours = classifier
    assert_same(ours(IMAGES[0], **kwargs), theirs(IMAGES[0], **kwargs))
    result = ours(IMAGES[:3], **kwargs)
    assert_same(result, theirs(IMAGES[:3], **kwargs))
    assert_plain_json(result)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_classification_batched_and_generator(classifier, batch_size):
    theirs, ours = classifier
    expected = theirs(IMAGES, top_k=3)
    assert_same(ours(IMAGES, top_k=3, batch_size=batch_size), expected)
    lazy = ours((im for im in IMAGES), top_k=3, batch_size=batch_size)
    assert not isinstance(lazy, list)
    assert_same(list(lazy), expected)


def test_classification_inputs_by_path_and_keyword(classifier, tmp_path):
    theirs, ours = classifier
    path = tmp_path / "x.png"
    IMAGES[1].save(path)
    assert_same(ours(str(path)), theirs(str(path)))
    assert_same(ours(images=IMAGES[1]), theirs(IMAGES[1]))  # 4.57.6 documents images= but requires inputs


def test_classification_bad_parameters(classifier):
    _, ours = classifier
    with pytest.raises(ValueError, match="function_to_apply"):
        ours(IMAGES[0], function_to_apply="tanh")
    with pytest.raises(ValueError, match="top_k"):
        ours(IMAGES[0], top_k=0)
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        ours("nowhere.png")


@pytest.fixture(params=FEATURE_ARCHS)
def extractor(request, pipelines):
    return pipelines("image-feature-extraction", build_vision(request.param, "base"))


@pytest.mark.parametrize("kwargs", [{}, {"pool": True}, {"image_processor_kwargs": {"do_normalize": False}}], ids=str)
def test_feature_extraction(extractor, kwargs):
    theirs, ours = extractor
    assert_same(ours(IMAGES[0], **kwargs), theirs(IMAGES[0], **kwargs))
    assert_same(ours(IMAGES[:4], batch_size=4, **kwargs), theirs(IMAGES[:4], **kwargs))


def test_feature_extraction_return_tensors(extractor):
    theirs, ours = extractor
    assert_same(ours(IMAGES[2], return_tensors=True), theirs(IMAGES[2], return_tensors=True))
