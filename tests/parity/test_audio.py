"""audio-classification and CTC speech recognition parity with transformers 4.57.6 (Wav2Vec2, HuBERT).

transformers pads a batch of raw audio, and then its group-norm feature encoder (no attention mask in
the extractor) normalises over the padding and its CTC decodes padded frames into extra characters;
inferline's batched results equal each input alone, so batched results are compared with
transformers' unbatched ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.audio import signal, signals
from parity.compare import assert_plain_json, assert_same

AUDIO_ARCHS = ["wav2vec2", "wav2vec2-stable", "wav2vec2-weighted", "hubert"]
SIGNALS = signals()


@pytest.fixture(params=AUDIO_ARCHS)
def classifier(request, checkpoint, pipelines):
    return pipelines("audio-classification", checkpoint(request.param, "audio-classification"))


@pytest.fixture(params=["wav2vec2", "wav2vec2-stable", "hubert"])
def ctc(request, checkpoint, pipelines):
    return pipelines("automatic-speech-recognition", checkpoint(request.param, "ctc"))


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 3}, {"top_k": 100}, {"top_k": None},
                                    {"function_to_apply": "sigmoid"}, {"function_to_apply": "none", "top_k": 2}],
                         ids=str)
def test_classification(classifier, kwargs):
    theirs, ours = classifier
    expected = [theirs(x, **kwargs) for x in SIGNALS]
    assert_same(ours(SIGNALS[0], **kwargs), expected[0])
    result = ours(SIGNALS, **kwargs)
    assert_same(result, expected)
    assert_plain_json(result)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_classification_batched_lists_and_generators(classifier, batch_size):
    theirs, ours = classifier
    expected = [theirs(x, top_k=None) for x in SIGNALS]
    assert_same(ours(SIGNALS, top_k=None, batch_size=batch_size), expected)
    lazy = ours((x for x in SIGNALS), top_k=None, batch_size=batch_size)
    assert not isinstance(lazy, list)
    assert_same(list(lazy), expected)


def test_classification_top_k_at_construction(checkpoint):
    """A top_k given at construction holds for later calls (transformers resets it to all labels at each call)."""
    import transformers

    import inferline

    path = str(checkpoint("wav2vec2", "audio-classification"))
    ours = inferline.pipeline("audio-classification", model=path, top_k=2)
    theirs = transformers.pipeline("audio-classification", model=path)
    assert_same(ours(SIGNALS[0]), theirs(SIGNALS[0], top_k=2))


def test_classification_other_rates(classifier):
    """A dict at another rate is resampled with soxr (transformers needs torchaudio: compare on our resampling)."""
    soxr = pytest.importorskip("soxr")
    theirs, ours = classifier
    for rate in (8000, 44100):
        x = signal(0.7, rate, seed=rate)
        got = ours({"sampling_rate": rate, "raw": x})
        assert_same(got, theirs(soxr.resample(x, rate, 16000)))


@pytest.mark.parametrize("kwargs", [{}, {"return_timestamps": "char"}, {"return_timestamps": "word"},
                                    {"chunk_length_s": 0.4}, {"chunk_length_s": 0.5, "stride_length_s": 0.1},
                                    {"chunk_length_s": 0.4, "stride_length_s": (0.1, 0.05),
                                     "return_timestamps": "word"}], ids=str)
def test_ctc(ctc, kwargs):
    theirs, ours = ctc
    expected = [theirs(x, **kwargs) for x in SIGNALS]
    assert_same(ours(SIGNALS[2], **kwargs), expected[2])
    for batch_size in (1, 4):
        result = ours(SIGNALS, batch_size=batch_size, **kwargs)
        assert_same(result, expected)
    assert_plain_json(result)
    assert_same(list(ours((x for x in SIGNALS), batch_size=4, **kwargs)), expected)


def test_ctc_dict_stride_and_extra_keys(ctc):
    theirs, ours = ctc
    x = SIGNALS[0]
    for item in ({"sampling_rate": 16000, "raw": x, "stride": (1600, 3200)},
                 {"sampling_rate": 16000, "array": x, "path": "x.wav", "id": "a"}):
        assert_same(ours(dict(item)), theirs(dict(item)))


def test_ctc_bad_parameters(ctc):
    _, ours = ctc
    with pytest.raises(ValueError, match="return_timestamps"):
        ours(SIGNALS[0], return_timestamps=True)
    with pytest.raises(ValueError, match="return_language"):
        ours(SIGNALS[0], return_language=True)
    with pytest.raises(ValueError, match="chunk_length_s"):
        ours(SIGNALS[0], chunk_length_s=0.2, stride_length_s=0.2)
    with pytest.raises(TypeError, match="inputs"):
        ours(object())
    with pytest.raises(ValueError, match="stride"):
        ours({"sampling_rate": 16000, "raw": SIGNALS[1], "stride": (4000, 4000)})
