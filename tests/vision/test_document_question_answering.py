"""document-question-answering parity with transformers 4.57.6 on tiny random checkpoints: LayoutLM (a WordPiece
vocabulary, and a RoBERTa BPE one as impira/layoutlm-document-qa has) and LayoutLMv3 (relative and spatial
attention biases; text only, and with its image processor's pixel_values): given word boxes, OCR of rendered
pages, top_k / max_answer_len / handle_impossible_answer, long documents in several windows, batching, bad inputs."""

from __future__ import annotations

import pytest

from fixtures.images import document_image
from fixtures.vision_checkpoints import build_vision
from parity.compare import assert_plain_json, assert_same

pytest.importorskip("PIL.Image")
TASK = "document-question-answering"
ARCHS = ["layoutlm", "layoutlm-bpe", "layoutlmv3-text", "layoutlmv3-nobias", "layoutlmv3"]
WORDS = "Invoice number US-001 issued on 2024-01-15 to ACME Corp . Total due : 42 dollars".split()
WORD_BOXES = [(w, [40 * i % 960, 20 + 30 * (i // 8), 40 * i % 960 + 35, 45 + 30 * (i // 8)]) for i, w in enumerate(WORDS)]
QUESTION = "What is the invoice number?"
PAGE = ["Invoice number: US-001", "Date: 2024-01-15", "Total due: 42 dollars"]


def _patches_to_pixel_values(theirs) -> None:
    """transformers 4.57.6 cannot run LayoutLMv3 with its image processor through this pipeline: it passes the
    pixels as `image=` (v2's name; v3 takes pixel_values) and scores the patch tokens' logits against a text-only
    p_mask. The oracle is its pipeline with those two steps done as intended: pixels in, text logits out."""
    model = theirs.model
    if getattr(model, "_oracle_wrapped", False):
        return
    forward = model.forward

    def text_logits(image=None, **inputs):
        out = forward(pixel_values=image, **inputs)
        length = inputs["input_ids"].shape[1]
        out["start_logits"], out["end_logits"] = out["start_logits"][:, :length], out["end_logits"][:, :length]
        return out

    model.forward, model._oracle_wrapped = text_logits, True


@pytest.fixture(params=ARCHS)
def pair(request, pipelines):
    theirs, ours = pipelines(TASK, build_vision(request.param, TASK))
    if type(theirs.model).__name__.startswith("LayoutLMv3"):  # without pixels the wrapper changes nothing
        _patches_to_pixel_values(theirs)
    return theirs, ours


def test_transformers_cannot_run_layoutlmv3_with_its_image_processor():
    """Pinned: why the oracle above wraps transformers' LayoutLMv3 model (see _patches_to_pixel_values)."""
    import transformers

    theirs = transformers.pipeline(TASK, model=str(build_vision("layoutlmv3", TASK)), device="cpu")
    with pytest.raises(TypeError, match="image"):
        theirs(image=document_image(PAGE), question=QUESTION, word_boxes=WORD_BOXES)


def test_pixel_values_change_the_answer(pipelines):
    """LayoutLMv3 with its image processor reads the page's patches: the scores differ from text only."""
    _, ours = pipelines(TASK, build_vision("layoutlmv3", TASK))
    with_image = ours(image=document_image(PAGE), question=QUESTION, word_boxes=WORD_BOXES, top_k=3)
    text_only = ours(image=None, question=QUESTION, word_boxes=WORD_BOXES, top_k=3)
    assert [a["score"] for a in with_image] != pytest.approx([a["score"] for a in text_only], abs=1e-6)


def long_word_boxes(n: int, seed: int = 0) -> list:
    words = [f"item{(i * 7 + seed) % 53}" if i % 3 else WORDS[i % len(WORDS)] for i in range(n)]
    return [(w, [(13 * i) % 900, (29 * i) % 900, (13 * i) % 900 + 60, (29 * i) % 900 + 40]) for i, w in enumerate(words)]


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 3}, {"top_k": 5, "max_answer_len": 2},
                                    {"top_k": 2, "handle_impossible_answer": True}], ids=str)
def test_word_boxes(pair, kwargs):
    theirs, ours = pair
    result = ours(image=None, question=QUESTION, word_boxes=WORD_BOXES, **kwargs)
    assert_same(result, theirs(image=None, question=QUESTION, word_boxes=WORD_BOXES, **kwargs))
    assert_plain_json(result)
    assert isinstance(result, list)  # a list even for top_k=1, as transformers returns


def test_input_forms(pair):
    theirs, ours = pair
    expected = theirs(image=None, question=QUESTION, word_boxes=WORD_BOXES)
    assert_same(ours({"image": None, "question": QUESTION, "word_boxes": WORD_BOXES}), expected)
    assert_same(ours(None, QUESTION, WORD_BOXES), expected)
    tuples = [(w, tuple(b)) for w, b in WORD_BOXES]
    assert_same(ours(image=None, question=QUESTION, word_boxes=tuples), expected)
    items = [{"image": None, "question": q, "word_boxes": WORD_BOXES} for q in (QUESTION, "What is due?")]
    listed = theirs(items, top_k=2)
    assert_same(ours(items, top_k=2), listed)
    assert_same(list(ours(iter(items), top_k=2)), listed)
    # the documented broadcast of one document to several questions (transformers 4.57.6 fails on it)
    assert_same(ours(image=None, question=[QUESTION, "What is due?"], word_boxes=WORD_BOXES, top_k=2), listed)


def test_empty_and_one_word(pair):
    theirs, ours = pair
    for word_boxes in ([], [("alone", [1, 2, 30, 40])]):
        for kwargs in ({}, {"handle_impossible_answer": True}):
            assert_same(ours(image=None, question=QUESTION, word_boxes=word_boxes, **kwargs),
                        theirs(image=None, question=QUESTION, word_boxes=word_boxes, **kwargs))


@pytest.mark.parametrize("batch_size", [1, 3])
def test_long_documents_batched_equal_transformers_unbatched(pair, batch_size):
    """Several windows per document; ours batched equals transformers' unbatched (it cannot batch them)."""
    theirs, ours = pair
    items = [{"image": document_image(PAGE[: 1 + n % 3]), "question": q, "word_boxes": long_word_boxes(n, n)}
             for q, n in ((QUESTION, 90), ("Who issued it?", 25), ("What is the total?", 140))]
    kwargs = dict(max_seq_len=48, doc_stride=16, top_k=3)
    assert len(list(ours.preprocess(items[2], max_seq_len=48, doc_stride=16))) > 3
    expected = theirs(items, batch_size=1, **kwargs)
    assert_same(ours(items, batch_size=batch_size, **kwargs), expected)
    assert_same(ours(items[0], **kwargs), expected[0])


def test_transformers_cannot_batch_windows_of_different_lengths(pair):
    """Pinned: transformers 4.57.6 fails batching windows of different lengths (their p_masks stay unpadded)."""
    theirs, _ = pair
    items = [{"image": None, "question": QUESTION, "word_boxes": long_word_boxes(n)} for n in (90, 25)]
    with pytest.raises(ValueError):
        theirs(items, batch_size=2, max_seq_len=48, doc_stride=16)


# ----- OCR (Tesseract) on rendered pages -----
def test_ocr_words_equal_transformers(pair):
    pytest.importorskip("pytesseract")
    import numpy as np
    from transformers.models.layoutlmv3.image_processing_layoutlmv3 import apply_tesseract

    from inferline.processing.ocr import read_words

    image = document_image(PAGE)
    for lang, config in ((None, ""), ("eng", "--psm 6")):
        words, boxes = read_words(image, lang=lang, tesseract_config=config)
        assert (words, boxes) == tuple(apply_tesseract(np.array(image), lang, config))
        assert "US-001" in words


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 3}, {"lang": "eng", "tesseract_config": "--psm 6", "top_k": 2}],
                         ids=str)
def test_ocr_answers(pair, kwargs):
    pytest.importorskip("pytesseract")
    theirs, ours = pair
    image = document_image(PAGE)
    assert_same(ours(image=image, question=QUESTION, **kwargs), theirs(image=image, question=QUESTION, **kwargs))
    pages = [{"image": document_image(PAGE[i:]), "question": QUESTION} for i in range(3)]
    assert_same(ours(pages, batch_size=2, **kwargs), theirs(pages, **kwargs))


def test_ocr_missing_says_what_to_install(pair, monkeypatch):
    _, ours = pair
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises((OSError, ImportError), match="tesseract-ocr"):
        ours(image=document_image(PAGE), question=QUESTION)
    import builtins

    real_import = builtins.__import__

    def no_pytesseract(name, *args, **kwargs):
        if name == "pytesseract":
            raise ImportError("No module named 'pytesseract'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pytesseract)
    with pytest.raises(ImportError, match=r"inferline\[ocr\]"):
        ours(image=document_image(PAGE), question=QUESTION)


# ----- bad inputs -----
@pytest.mark.parametrize("call, error, match", [
    (lambda p: p(image=None, question=QUESTION), ValueError, "word_boxes"),
    (lambda p: p(image=None, question="", word_boxes=WORD_BOXES), ValueError, "question"),
    (lambda p: p({"image": None, "word_boxes": WORD_BOXES}), TypeError, "question"),
    (lambda p: p(image=None, question=QUESTION, word_boxes="words"), TypeError, "word_boxes"),
    (lambda p: p(image=None, question=QUESTION, word_boxes=[("a", [1, 2, 3])]), ValueError, "word_boxes"),
    (lambda p: p(image=None, question=QUESTION, word_boxes=[("a", [1, 2, 3, 1001])]), ValueError, "0–1000"),
    (lambda p: p(image=None, question=QUESTION, word_boxes=[("a", [5, 2, 3, 4])]), ValueError, "x0 <= x1"),
    (lambda p: p(image=None, question=QUESTION, word_boxes=[(3, [1, 2, 3, 4])]), ValueError, "string word"),
    (lambda p: p(image=None, question=QUESTION, word_boxes=WORD_BOXES, top_k=0), ValueError, "top_k"),
    (lambda p: p(image=None, question=QUESTION, word_boxes=WORD_BOXES, max_answer_len=0), ValueError,
     "max_answer_len"),
    (lambda p: p(image=None, question=QUESTION, word_boxes=WORD_BOXES, topk=2), TypeError, "Unknown parameter"),
    (lambda p: p(image=None, question=QUESTION, word_boxes=WORD_BOXES, lang=3), TypeError, "lang"),
    (lambda p: p(image="/no/such/page.png", question=QUESTION), (OSError, ValueError), "page.png"),
    (lambda p: p(["not a dict"]), TypeError, "dict"),
    (lambda p: p(), ValueError, "image"),
    (lambda p: p(image=None, question=QUESTION, word_boxes=long_word_boxes(50), max_seq_len=20, doc_stride=15),
     ValueError, "doc_stride"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_inputs(pair, call, error, match):
    _, ours = pair
    with pytest.raises(error, match=match):
        call(ours)


def test_bert_checkpoint_is_refused():
    """Only models with a document-QA head (boxes per token) are taken, as transformers' model-type check."""
    import inferline
    from fixtures.checkpoints import build

    with pytest.raises(ValueError, match="document-question-answering"):
        inferline.pipeline(TASK, model=str(build("bert", "question-answering")))
