"""object-detection parity with transformers 4.57.6 (YOLOS), on images of several sizes and modes.
transformers crashes batching images of different sizes; ours must equal its unbatched results."""

from __future__ import annotations

import pytest

from fixtures.images import make_image, variety
from fixtures.vision_checkpoints import build_timm_detr, build_vision
from parity.compare import assert_plain_json, assert_same

pytest.importorskip("PIL.Image")
IMAGES = variety(4) + [make_image(64, 48, "RGB", 9)]  # two of one size, so a batch groups them


@pytest.fixture(params=["yolos", "detr"])
def pair(request, pipelines):
    return pipelines("object-detection", build_vision(request.param, "object-detection"))


@pytest.mark.parametrize("threshold", [None, 0.0, 0.2])
def test_single_and_list(pair, threshold):
    theirs, ours = pair
    kwargs = {} if threshold is None else {"threshold": threshold}
    assert_same(ours(IMAGES[0], **kwargs), theirs(IMAGES[0], **kwargs))
    result = ours(IMAGES, **kwargs)
    expected = [theirs(image, **kwargs) for image in IMAGES]
    assert_same(result, expected)
    assert_plain_json(result)
    if threshold == 0.0:
        assert all(result), "threshold 0 keeps every detection"


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_mixed_sizes_equal_unbatched(pair, batch_size):
    theirs, ours = pair
    expected = [theirs(image, threshold=0.0) for image in IMAGES]  # one by one: 4.57.6 cannot batch these
    assert_same(ours(IMAGES, threshold=0.0, batch_size=batch_size), expected)
    assert_same(list(ours(iter(IMAGES), threshold=0.0, batch_size=batch_size)), expected)


def test_detr_timm_backbone_names_load_identically():
    """facebook/detr-resnet-50 stores its backbone under timm's names (with num_batches_tracked counters):
    the same weights under those names must give identical outputs."""
    import inferline

    hf = inferline.pipeline("object-detection", model=str(build_vision("detr", "object-detection")))
    timm = inferline.pipeline("object-detection", model=str(build_timm_detr()))
    for image in IMAGES[:3]:
        assert_same(timm(image, threshold=0.0), hf(image, threshold=0.0), atol=0)
