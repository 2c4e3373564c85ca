"""visual-question-answering parity with transformers 4.57.6 (ViLT), on images of several sizes and modes.

Two checkpoints: max_image_length -1 (every patch kept) and 10 (a random subset of each image's 12-24 patches,
drawn with torch's global generator even in eval mode): calls are seeded alike on both sides. transformers
crashes batching images of different sizes; ours must equal its unbatched results, seeded once and called
item by item (its list calls draw one DataLoader seed first, so lists are compared item by item).
"""

from __future__ import annotations

import pytest
import torch

from fixtures.images import make_image, variety
from fixtures.vision_checkpoints import build_vision
from parity.compare import assert_plain_json, assert_same

pytest.importorskip("PIL.Image")
IMAGES = variety(4) + [make_image(64, 48, "RGB", 9)]  # 4 sizes, RGB/RGBA/P/L; the last one the first's size
QUESTIONS = ["What is in the picture?", "how many cats are there", "Is it RED?", "where", "What colour is the thing "
             "on the table near the window?"]
LONG = "is there " + "a very long and winding road with " * 8 + "trees?"  # over ViLT's 40 tokens
ITEMS = [{"image": image, "question": question} for image, question in zip(IMAGES, QUESTIONS)] + \
    [{"image": IMAGES[0], "question": "Is it a cat?"}, {"image": IMAGES[3], "question": "Is it a cat?"}]


@pytest.fixture(params=[-1, 10], ids=["all-patches", "sampled-patches"])
def pair(request, pipelines):
    overrides = {} if request.param == -1 else {"max_image_length": request.param}
    return pipelines("visual-question-answering", build_vision("vilt", "visual-question-answering", **overrides))


def seeded(call, *args, **kwargs):
    torch.manual_seed(0)
    return call(*args, **kwargs)


def one_by_one(theirs, items, **kwargs):
    """transformers' answers to each item alone, after one seed (its draws follow one another as ours do)."""
    torch.manual_seed(0)
    return [theirs(item, **kwargs) for item in items]


def test_call_forms(pair):
    theirs, ours = pair
    image, question = IMAGES[1], QUESTIONS[0]
    expected = seeded(theirs, image=image, question=question)
    assert_same(seeded(ours, image, question), expected)
    assert_same(seeded(ours, image=image, question=question), expected)
    assert_same(seeded(ours, {"image": image, "question": question}), expected)
    assert_same(seeded(ours, [{"image": image, "question": question}]), [expected])
    assert_plain_json(expected)
    assert len(expected) == 5 and set(expected[0]) == {"score", "answer"}


@pytest.mark.parametrize("top_k", [1, 3, 8, 50])  # 8 answers: 50 is capped
def test_top_k(pair, top_k):
    theirs, ours = pair
    expected = seeded(theirs, IMAGES[2], QUESTIONS[1], top_k=top_k)
    assert_same(seeded(ours, IMAGES[2], QUESTIONS[1], top_k=top_k), expected)
    assert len(expected) == min(top_k, 8)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_mixed_sizes_equal_unbatched(pair, batch_size):
    theirs, ours = pair
    expected = one_by_one(theirs, ITEMS, top_k=3)
    assert_same(seeded(ours, ITEMS, top_k=3, batch_size=batch_size), expected)
    assert_same(list(seeded(ours, iter(ITEMS), top_k=3, batch_size=batch_size)), expected)


def test_batches_hold_one_image_size(pair):
    """All of a size batch together; with random patch subsets only neighbours do (the draws stay in order)."""
    _, ours = pair
    batches = []
    hook = ours.model.register_forward_hook(lambda module, args, logits: batches.append(len(logits)))
    try:
        seeded(ours, ITEMS, batch_size=4)  # sizes A B C D A A D
    finally:
        hook.remove()
    assert batches == ([1, 1, 1, 1, 2, 1] if ours.model.samples_patches else [3, 1, 1, 2])


@pytest.mark.parametrize("batch_size", [1, 3])
def test_images_with_one_question_and_questions_for_one_image(pair, batch_size):
    theirs, ours = pair
    assert_same(seeded(ours, IMAGES, QUESTIONS[2], batch_size=batch_size),
                one_by_one(theirs, [{"image": image, "question": QUESTIONS[2]} for image in IMAGES]))
    assert_same(seeded(ours, IMAGES[0], QUESTIONS, batch_size=batch_size),
                one_by_one(theirs, [{"image": IMAGES[0], "question": q} for q in QUESTIONS]))
    # both lists: every question for every image, question by question (transformers' order)
    pairs = [{"image": image, "question": q} for q in QUESTIONS[:2] for image in IMAGES[:3]]
    assert_same(seeded(ours, IMAGES[:3], QUESTIONS[:2], batch_size=batch_size), one_by_one(theirs, pairs))
    expected = one_by_one(theirs, [{"image": image, "question": QUESTIONS[3]} for image in IMAGES[:3]])
    assert_same(list(seeded(ours, iter(IMAGES[:3]), QUESTIONS[3], batch_size=batch_size)), expected)
    assert_same(seeded(ours, Images(IMAGES[:3]), QUESTIONS[3], batch_size=batch_size), expected)  # a dataset


class Images:
    """A dataset of images (transformers' KeyDataset(dataset, "image") form)."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_list_forms_equal_transformers_own_lists(pipelines):
    """With every patch kept nothing is random: transformers' own list calls are the oracle."""
    theirs, ours = pipelines("visual-question-answering", build_vision("vilt", "visual-question-answering"))
    assert_same(ours(IMAGES[:3], QUESTIONS[0]), theirs(IMAGES[:3], QUESTIONS[0]))
    assert_same(ours(IMAGES[0], QUESTIONS[:3]), theirs(IMAGES[0], QUESTIONS[:3]))
    assert_same(ours(IMAGES[:2], QUESTIONS[:2]), theirs(IMAGES[:2], QUESTIONS[:2]))
    assert_same(ours(ITEMS, top_k=2, batch_size=4), theirs(ITEMS, top_k=2))
    from transformers.pipelines.pt_utils import KeyDataset

    dataset = KeyDataset([{"image": image} for image in IMAGES[:3]], "image")
    assert_same(ours(dataset, QUESTIONS[1], batch_size=2), theirs(dataset, QUESTIONS[1]))


def test_image_paths_and_padding(pair, tmp_path):
    theirs, ours = pair
    path = str(tmp_path / "image.png")
    IMAGES[3].save(path)
    assert_same(seeded(ours, path, QUESTIONS[4]), seeded(theirs, path, QUESTIONS[4]))
    # padding to ViLT's 40 tokens leaves the answers as they are (padded tokens are masked)
    assert_same(seeded(ours, path, QUESTIONS[4], padding="max_length"),
                seeded(theirs, path, QUESTIONS[4], padding="max_length"))


def test_long_question_is_truncated(pair):
    """transformers 4.57.6 crashes past the 40 position embeddings unless truncation=True; we truncate (with a
    warning), and truncation=False is an error naming the limit."""
    theirs, ours = pair
    expected = seeded(theirs, IMAGES[0], LONG, truncation=True)
    assert_same(seeded(ours, IMAGES[0], LONG), expected)
    assert_same(seeded(ours, IMAGES[0], LONG, truncation=True), expected)
    with pytest.raises(ValueError, match="at most 40"):
        ours(IMAGES[0], LONG, truncation=False)


def test_padded_batch_through_the_model_equals_transformers(pipelines):
    """The model itself on images of different sizes padded into one batch (pixel_mask, per-image position
    grids): the logits of transformers' model on the same batch."""
    import transformers

    theirs, ours = pipelines("visual-question-answering", build_vision("vilt", "visual-question-answering"))
    images = [image.convert("RGB") for image in IMAGES[:4]]
    pixels = theirs.image_processor(images=images, return_tensors="pt")
    ours_pixels = ours.image_processor(images)
    assert_same(ours_pixels["pixel_mask"], pixels["pixel_mask"], atol=0)
    text = theirs.tokenizer(QUESTIONS[:4], padding=True, return_tensors="pt")
    assert isinstance(theirs.model, transformers.ViltForQuestionAnswering)
    with torch.no_grad():
        expected = theirs.model(**text, **pixels).logits
        got = ours.model(text["input_ids"], text["attention_mask"], text["token_type_ids"], **ours_pixels)
    assert_same(got, expected)
    one = ours.model(text["input_ids"][:1], text["attention_mask"][:1], text["token_type_ids"][:1],
                     **ours.image_processor(images[:1]))
    assert_same(got[:1], one)  # a padded row answers as it does alone


@pytest.mark.parametrize("call, error, words", [
    (lambda p: p(IMAGES[0]), ValueError, "question"),
    (lambda p: p(image=None, question="what?"), ValueError, "image"),
    (lambda p: p({"image": IMAGES[0]}), ValueError, "'question'"),
    (lambda p: p({"question": "what?"}), ValueError, "'image'"),
    (lambda p: p([{"image": IMAGES[0], "question": "what?"}, "what?"]), TypeError, "dict with 'image'"),
    (lambda p: p(IMAGES[0], 7), TypeError, "`question` must be a string"),
    (lambda p: p(IMAGES[0], ["what?", 7]), TypeError, "`question` must be a string"),
    (lambda p: p(IMAGES[0], "   "), ValueError, "empty"),
    (lambda p: p({"image": IMAGES[0], "question": ["a", "b"]}), TypeError, "`question` must be a string"),
    (lambda p: p([{"image": IMAGES[0], "question": "q"}], "what?"), ValueError, "own 'question'"),
    (lambda p: p(IMAGES[0], "what?", top_k=0), ValueError, "top_k"),
    (lambda p: p(IMAGES[0], "what?", padding="sideways"), ValueError, "padding"),
    (lambda p: p(IMAGES[0], "what?", max_new_tokens=3), TypeError, "Unknown parameter"),
    (lambda p: p("/no/such/image.png", "what?"), FileNotFoundError, "No image file"),
    (lambda p: p(make_image(13, 250), "what?"), ValueError, "aspect ratio"),  # resized to 0 pixels wide
    (lambda p: p([], "what?"), ValueError, "empty list"),
], ids=range(16))
def test_bad_inputs(pair, call, error, words):
    _, ours = pair
    with pytest.raises(error, match=words):
        call(ours)


def test_task_follows_from_the_checkpoint():
    """ViltForQuestionAnswering is visual-question-answering (not the extractive question-answering)."""
    import inferline

    pipe = inferline.pipeline(model=str(build_vision("vilt", "visual-question-answering")), device="cpu")
    assert pipe.task == "visual-question-answering"
    assert type(pipe).__name__ == "VisualQuestionAnsweringPipeline"
