"""zero-shot-object-detection parity with transformers 4.57.6 (OWL-ViT), on images of several sizes and modes,
in each input form transformers takes. transformers runs the model once per label; ours embeds the image once
and scores every label against it, which must give the same detections."""

from __future__ import annotations

import pytest

from fixtures.images import make_image, variety
from fixtures.vision_checkpoints import build_vision
from parity.compare import assert_plain_json, assert_same

pytest.importorskip("PIL.Image")
IMAGES = variety(5) + [make_image(64, 48, "RGB", 9)]
LABELS = ["a cat", "dog", "a red car on a long road"]
OTHER = ["trees", "a boat"]


@pytest.fixture
def pair(pipelines):
    return pipelines("zero-shot-object-detection", build_vision("owlvit", "zero-shot-object-detection"))


@pytest.mark.parametrize("kwargs", [{}, {"threshold": 0.55}, {"threshold": 0.0, "top_k": 5}, {"top_k": 0}], ids=str)
def test_one_image(pair, kwargs):
    theirs, ours = pair
    for image in IMAGES[:4]:
        result = ours(image, candidate_labels=LABELS, **kwargs)
        assert_same(result, theirs(image, candidate_labels=LABELS, **kwargs))
        assert_plain_json(result)
    assert result, "the fixture must detect something"
    if "top_k" in kwargs and kwargs["top_k"]:
        assert len(result) == kwargs["top_k"]


def test_input_forms(pair):
    theirs, ours = pair
    image = IMAGES[1]
    expected = theirs(image, candidate_labels=LABELS, threshold=0.5)
    assert_same(ours(image, LABELS, threshold=0.5), expected)  # labels positionally
    assert_same(ours({"image": image, "candidate_labels": LABELS}, threshold=0.5), expected)
    assert_same(ours(image, text_queries=LABELS, threshold=0.5), expected)  # the older keyword
    assert_same(ours(images=image, candidate_labels=LABELS, threshold=0.5), expected)
    # a comma string is split as transformers splits it: on commas, not stripped
    assert_same(ours(image, candidate_labels="cat, dog,car", threshold=0.5),
                theirs(image, candidate_labels="cat, dog,car", threshold=0.5))
    dicts = [{"image": IMAGES[0], "candidate_labels": LABELS}, {"image": IMAGES[2], "candidate_labels": OTHER}]
    assert_same(ours(dicts, threshold=0.5), theirs(dicts, threshold=0.5))
    # a dict's own labels win over the call's (which serve the items without any)
    assert_same(ours(dicts + [IMAGES[3]], candidate_labels=OTHER, threshold=0.5),
                theirs(dicts, threshold=0.5) + [theirs(IMAGES[3], candidate_labels=OTHER, threshold=0.5)])
    construction_time = type(ours)(ours.model, tokenizer=ours.tokenizer, image_processor=ours.image_processor,
                                   task=ours.task, candidate_labels=LABELS)
    assert_same(construction_time(image, threshold=0.5), expected)
    per_image = [LABELS, OTHER]
    assert_same(ours(IMAGES[:2], candidate_labels=per_image, threshold=0.5),
                theirs(IMAGES[:2], candidate_labels=per_image, threshold=0.5))


def test_flat_labels_with_several_images_are_shared(pair):
    """transformers zips a list of images with a flat label list (image i gets label i alone, later images are
    dropped); here the list is shared by every image, as zero-shot-image-classification shares it."""
    theirs, ours = pair
    result = ours(IMAGES[:3], candidate_labels=LABELS, threshold=0.5)
    assert_same(result, [theirs(image, candidate_labels=LABELS, threshold=0.5) for image in IMAGES[:3]])


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_and_generator(pair, batch_size):
    """Batched (shared and per-image label sets, images of several sizes) equals transformers one by one."""
    theirs, ours = pair
    items = [{"image": image, "candidate_labels": LABELS if i % 3 else OTHER} for i, image in enumerate(IMAGES)]
    expected = [theirs(item, threshold=0.3) for item in items]
    assert_same(ours(items, threshold=0.3, batch_size=batch_size), expected)
    assert_same(list(ours(iter(items), threshold=0.3, batch_size=batch_size)), expected)
    shared = [theirs(image, candidate_labels=LABELS, threshold=0.3) for image in IMAGES]
    assert_same(ours(IMAGES, candidate_labels=LABELS, threshold=0.3, batch_size=batch_size), shared)


def test_query_starting_with_id_zero_is_masked(pair):
    """OWL-ViT treats a query whose first token id is 0 as padding (its logits are the float minimum, so it never
    scores); the fixture's tokenizer always starts with id 1, so the ids are written by hand here."""
    import torch

    theirs, ours = pair
    ids = torch.tensor([[0, 40, 41, 2], [1, 40, 41, 2]])
    mask = torch.ones_like(ids)
    pixels = ours.preprocess({"image": IMAGES[0], "candidate_labels": ["x"]})["pixel_values"][None]
    with torch.no_grad():
        expected = theirs.model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
    width = ours.model.text_padding["max_length"]
    padded = torch.nn.functional.pad(ids, (0, width - 4)), torch.nn.functional.pad(mask, (0, width - 4))
    out = ours.forward({"pixel_values": pixels, "input_ids": padded[0][None], "attention_mask": padded[1][None]})
    assert_same(out["pred_boxes"], expected.pred_boxes)
    assert (out["logits"][..., 0] == torch.finfo(torch.float32).min).all()
    assert_same(out["logits"][..., 1], expected.logits[..., 1])
    assert_same(out["logits"][..., 0], expected.logits[..., 0], atol=0)


def test_bad_inputs(pair):
    _, ours = pair
    with pytest.raises(ValueError, match="candidate_labels"):
        ours(IMAGES[0])
    with pytest.raises(ValueError, match="empty"):
        ours(IMAGES[0], candidate_labels=[])
    with pytest.raises(TypeError, match="candidate_labels"):
        ours(IMAGES[0], candidate_labels=[1, 2])
    with pytest.raises(ValueError, match="tokens long"):
        ours(IMAGES[0], candidate_labels=["a very long label " * 6])
    with pytest.raises(ValueError, match="2 label lists for 3 images"):
        ours(IMAGES[:3], candidate_labels=[LABELS, OTHER])
    with pytest.raises(ValueError, match="zero-shot-object-detection takes"):
        ours([{"picture": IMAGES[0], "candidate_labels": LABELS}])
    with pytest.raises(TypeError, match="candidate_labels"):
        ours(IMAGES[0], candidate_labels=[["a"], "b"])
    with pytest.raises(TypeError, match="threshold"):
        ours(IMAGES[0], candidate_labels=LABELS, threshold="high")
    with pytest.raises(ValueError, match="top_k"):
        ours(IMAGES[0], candidate_labels=LABELS, top_k=-1)
    with pytest.raises(TypeError, match="Unknown parameter"):
        ours(IMAGES[0], candidate_labels=LABELS, hypothesis_template="{}")
    with pytest.raises(TypeError, match="Unsupported image input"):
        ours(3.5, candidate_labels=LABELS)
