"""depth-estimation parity with transformers 4.57.6: DPT (square grid; the "project" and "add" readouts, BatchNorm
fusion) and Depth Anything (DINOv2, any aspect ratio; relative and metric), on images of several sizes and modes.

`predicted_depth` must be within 1e-4. The `depth` image is the map min-max scaled and truncated to uint8, so
a float a hair away from an integer boundary can land one grey level off: it may differ by at most 1 on at
most 0.1% of its pixels (at least one pixel allowed, for tiny images); measured: at most 0.03%.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.images import make_image, variety
from fixtures.vision_checkpoints import build_vision
from parity.compare import assert_same

pytest.importorskip("PIL.Image")
# 13x250 is too narrow for Depth Anything's 35-pixel side (an error: tested below); repeated sizes make groups
IMAGES = [image for image in variety(8) if image.size != (13, 250)] + [make_image(64, 48, "RGB", 9)]
ARCHS = ["dpt", "dpt-add-bn", "depth_anything", "depth_anything-metric"]


@pytest.fixture(params=ARCHS)
def pair(request, pipelines):
    return pipelines("depth-estimation", build_vision(request.param, "depth-estimation"))


def assert_same_depth(ours, theirs):
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same_depth(a, b)
        return
    assert set(ours) == {"predicted_depth", "depth"}
    assert_same(ours["predicted_depth"], theirs["predicted_depth"])
    assert ours["depth"].mode == theirs["depth"].mode == "L" and ours["depth"].size == theirs["depth"].size
    a, b = np.asarray(ours["depth"]).astype(int), np.asarray(theirs["depth"]).astype(int)
    off = a != b
    assert np.abs(a - b).max() <= 1, "grey levels more than 1 apart"
    assert off.sum() <= max(1, 0.001 * off.size), f"{off.sum()} of {off.size} pixels differ"


def test_single_and_list(pair):
    theirs, ours = pair
    for image in IMAGES[:4]:
        result = ours(image)
        assert_same_depth(result, theirs(image))
        assert tuple(result["predicted_depth"].shape) == (image.height, image.width)
    assert_same_depth(ours(IMAGES[:3]), theirs(IMAGES[:3]))
    assert_same_depth(ours(images=IMAGES[4]), theirs(IMAGES[4]))  # the older keyword (4.57.6 requires `inputs`)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_mixed_sizes_equal_unbatched(pair, batch_size):
    """Depth Anything keeps each image's aspect ratio, so the processed sizes differ; transformers 4.57.6 cannot
    batch those, so the oracle is its unbatched result."""
    theirs, ours = pair
    expected = [theirs(image) for image in IMAGES]
    assert_same_depth(ours(IMAGES, batch_size=batch_size), expected)
    assert_same_depth(list(ours(iter(IMAGES), batch_size=batch_size)), expected)


def test_timeout_and_parameters_forms(pair, tmp_path):
    theirs, ours = pair
    path = str(tmp_path / "image.png")
    IMAGES[1].save(path)
    assert_same_depth(ours(path, timeout=3), theirs(path, timeout=3))
    assert_same_depth(ours(path, parameters={"timeout": 3}), theirs(path, parameters={"timeout": 3}))


def test_one_pixel_wide_image_keeps_two_dimensions(pipelines):
    """transformers squeezes a 1-pixel side out of predicted_depth (shape (30,)); a depth map stays (H, W) here."""
    theirs, ours = pipelines("depth-estimation", build_vision("dpt", "depth-estimation"))
    image = make_image(1, 30)
    result, expected = ours(image), theirs(image)
    assert tuple(result["predicted_depth"].shape) == (30, 1)
    assert_same(result["predicted_depth"][:, 0], expected["predicted_depth"])
    assert np.array_equal(np.asarray(result["depth"]), np.asarray(expected["depth"]))


def test_dpt_needs_a_square_grid(tmp_path):
    """A DPT processor that keeps the aspect ratio gives a non-square patch grid: transformers' DPT fails deep in a
    reshape (or silently scrambles the grid when h*w is a square); here it is a clear error."""
    import json
    import shutil

    import inferline

    folder = tmp_path / "dpt"
    shutil.copytree(build_vision("dpt", "depth-estimation"), folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config.update(keep_aspect_ratio=True, ensure_multiple_of=8)
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    ours = inferline.pipeline("depth-estimation", model=str(folder))
    with pytest.raises(ValueError, match="square patch grid"):
        ours(make_image(80, 40))


def test_bad_inputs(pipelines, tmp_path):
    _, ours = pipelines("depth-estimation", build_vision("depth_anything", "depth-estimation"))
    with pytest.raises(FileNotFoundError, match="no-such.png"):
        ours(str(tmp_path / "no-such.png"))
    with pytest.raises(TypeError, match="Unsupported image input"):
        ours(12)
    with pytest.raises(ValueError, match="aspect ratio is too extreme"):
        ours(make_image(13, 250))
    with pytest.raises(ValueError, match="empty list"):
        ours([])
    with pytest.raises(TypeError, match="Unknown parameter"):
        ours(IMAGES[0], threshold=0.5)
    with pytest.raises(TypeError, match="timeout"):
        ours(IMAGES[0], timeout="soon")
    with pytest.raises(ValueError, match="needs inputs"):
        ours()


def test_constant_depth_is_black():
    """An all-zero map (every final ReLU dead) has no range to scale: transformers divides by zero (NaN cast to
    uint8, with a warning); here it is all 0."""
    import torch

    import inferline

    pipe = inferline.pipeline("depth-estimation", model=str(build_vision("dpt", "depth-estimation")))
    result = pipe.postprocess({"predicted_depth": torch.zeros(1, 8, 8), "target_size": (6, 4)})
    assert np.asarray(result["depth"]).max() == 0 and result["depth"].size == (4, 6)
