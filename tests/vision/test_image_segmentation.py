"""image-segmentation parity with transformers 4.57.6: SegFormer (semantic) and DETR's panoptic mask head
(panoptic / instance / semantic), on synthetic images of several sizes and modes. Masks must be pixel-equal
up to MASK_TOLERANCE of the pixels (a float on a threshold or an argmax tie may flip a pixel)."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.images import make_image, variety
from fixtures.vision_checkpoints import build_timm_detr, build_vision
from parity.compare import ATOL

pytest.importorskip("PIL.Image")
IMAGES = variety(5) + [make_image(64, 48, "RGB", 9)]  # two of one size, so a DETR batch groups them
MASK_TOLERANCE = 0.001  # at most 0.1% of a mask's pixels may differ
MODELS = {"segformer": "semantic-segmentation", "detr-panoptic": "image-segmentation"}
CALLS = {
    "segformer": [{}, {"subtask": "semantic"}, {"threshold": 0.1, "mask_threshold": 0.2}],
    "detr-panoptic": [{}, {"threshold": 0.0, "mask_threshold": 0.1},
                      {"threshold": 0.2, "mask_threshold": 0.05, "overlap_mask_area_threshold": 0.0},
                      {"subtask": "panoptic", "threshold": 0.0, "mask_threshold": 0.1,
                       "overlap_mask_area_threshold": 0.3},
                      {"subtask": "instance", "threshold": 0.0, "mask_threshold": 0.05},
                      {"subtask": "semantic"}],
}


def assert_segments(ours, theirs, path="result"):
    """Same labels and scores (1e-4; None for semantic), masks "L" of the same size, pixel-equal up to the tolerance."""
    if theirs and isinstance(theirs[0], list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{path}: {len(ours)} results != {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_segments(a, b, f"{path}[{i}]")
        return
    assert isinstance(ours, list), f"{path}: {type(ours).__name__} is not a list"
    assert [s["label"] for s in ours] == [s["label"] for s in theirs], f"{path}: labels differ"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert list(a) == ["score", "label", "mask"], f"{path}[{i}]: keys {list(a)}"
        if b["score"] is None:
            assert a["score"] is None, f"{path}[{i}]: score {a['score']!r} != None"
        else:
            assert isinstance(a["score"], float) and abs(a["score"] - b["score"]) <= ATOL, f"{path}[{i}]: score"
        assert a["mask"].mode == "L" and a["mask"].size == b["mask"].size, f"{path}[{i}]: mask {a['mask']}"
        mine, expected = np.asarray(a["mask"]), np.asarray(b["mask"])
        assert set(np.unique(mine)) <= {0, 255}, f"{path}[{i}]: mask values {np.unique(mine)}"
        assert (mine != expected).mean() <= MASK_TOLERANCE, f"{path}[{i}]: {(mine != expected).sum()} pixels differ"


def _cases():
    return [(arch, kwargs) for arch in MODELS for kwargs in CALLS[arch]]


@pytest.fixture(scope="module")
def models(pipelines):
    return {arch: pipelines("image-segmentation", build_vision(arch, head)) for arch, head in MODELS.items()}


@pytest.mark.parametrize("arch,kwargs", _cases(), ids=str)
def test_single_and_list(models, arch, kwargs):
    theirs, ours = models[arch]
    result = ours(IMAGES[0], **kwargs)
    assert_segments(result, theirs(IMAGES[0], **kwargs))
    for segment, image in zip(result, IMAGES):
        assert segment["mask"].size == IMAGES[0].size
    assert_segments(ours(IMAGES, **kwargs), [theirs(image, **kwargs) for image in IMAGES])


def test_calls_find_segments(models):
    """The calls above must exercise real masks: several segments, of several labels."""
    theirs, _ = models["detr-panoptic"]
    found = [s for kwargs in CALLS["detr-panoptic"][1:] for image in IMAGES for s in theirs(image, **kwargs)]
    assert len(found) > len(IMAGES) and len({s["label"] for s in found}) > 1
    theirs, _ = models["segformer"]
    assert all(len(theirs(image)) > 1 for image in IMAGES)


@pytest.mark.parametrize("arch", MODELS)
@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_mixed_sizes_equal_unbatched(models, arch, batch_size):
    theirs, ours = models[arch]
    kwargs = CALLS[arch][1]
    expected = [theirs(image, **kwargs) for image in IMAGES]  # one by one: 4.57.6 pads DETR batches
    assert_segments(ours(IMAGES, batch_size=batch_size, **kwargs), expected)
    lazy = ours(iter(IMAGES), batch_size=batch_size, **kwargs)
    assert not isinstance(lazy, list)
    assert_segments(list(lazy), expected)


def test_subtasks_the_model_lacks(models):
    theirs, ours = models["segformer"]
    for subtask in ("panoptic", "instance"):
        with pytest.raises(ValueError, match="not supported"):
            theirs(IMAGES[0], subtask=subtask)
        with pytest.raises(ValueError, match=f"Subtask '{subtask}' is not supported.*semantic"):
            ours(IMAGES[0], subtask=subtask)


@pytest.mark.parametrize("arch", MODELS)
def test_bad_parameters(models, arch):
    _, ours = models[arch]
    with pytest.raises(ValueError, match="`subtask` must be one of panoptic, instance, semantic.*'everything'"):
        ours(IMAGES[0], subtask="everything")
    with pytest.raises(TypeError, match="`threshold` must be a number.*'high'"):
        ours(IMAGES[0], threshold="high")
    with pytest.raises(TypeError, match="Unknown parameter.*top_k"):
        ours(IMAGES[0], top_k=3)
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        ours("nowhere.png")


def test_images_keyword_and_path(models, tmp_path):
    theirs, ours = models["detr-panoptic"]
    path = tmp_path / "x.png"
    IMAGES[2].save(path)
    kwargs = CALLS["detr-panoptic"][1]
    assert_segments(ours(str(path), **kwargs), theirs(str(path), **kwargs))
    # 4.57.6 pops `images=` but its signature still requires `inputs`: compared with the positional call
    assert_segments(ours(images=IMAGES[2], **kwargs), theirs(IMAGES[2], **kwargs))


def test_detr_panoptic_timm_backbone_names_load_identically():
    """facebook/detr-resnet-50-panoptic (the task's default) stores its backbone under timm's names, with
    BatchNorm counters: the same weights under those names must give identical segments."""
    import inferline

    hf = inferline.pipeline("image-segmentation", model=str(build_vision("detr-panoptic", "image-segmentation")))
    timm = inferline.pipeline("image-segmentation", model=str(build_timm_detr("detr-panoptic", "image-segmentation")))
    kwargs = CALLS["detr-panoptic"][1]
    for image in IMAGES[:3]:
        expected = hf(image, **kwargs)
        assert expected
        got = timm(image, **kwargs)
        assert [(s["score"], s["label"], s["mask"].tobytes()) for s in got] == \
            [(s["score"], s["label"], s["mask"].tobytes()) for s in expected]


def test_task_inferred_from_the_architecture():
    import inferline

    for arch, head in MODELS.items():
        assert inferline.pipeline(model=str(build_vision(arch, head))).task == "image-segmentation"


def test_detr_backbone_outputs_follow_the_config():
    """The stages DETR reads are the backbone's out_features (transformers) or out_indices (timm, default 1-4)."""
    from inferline.models.detr import DetrConfig

    resnet = {"model_type": "resnet", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 8, 16, 16]}
    assert DetrConfig.from_hf({"backbone_config": {**resnet, "out_features": ["stage2", "stage4"]}}
                              ).feature_stages() == [1, 3]
    assert DetrConfig.from_hf({"backbone_config": resnet}).feature_stages() == [3]  # transformers: the last stage
    assert DetrConfig.from_hf({"backbone": "resnet50"}).feature_stages() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="'stem'.*not the stem"):
        DetrConfig.from_hf({"backbone_config": {**resnet, "out_features": ["stem", "stage4"]}}).feature_stages()
