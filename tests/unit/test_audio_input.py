"""load_audio (every input form and its errors) and the feature extractors against transformers'."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fixtures.audio import signal
from inferline.processing.audio import WhisperFeatureExtractor, Wav2Vec2FeatureExtractor, load_audio

soundfile = pytest.importorskip("soundfile")
soxr = pytest.importorskip("soxr")


def _wav_bytes(array, rate, fmt="WAV"):
    buffer = io.BytesIO()
    soundfile.write(buffer, array, rate, format=fmt)
    return buffer.getvalue()


def test_arrays_tensors_and_channels():
    x = signal(0.5)
    np.testing.assert_array_equal(load_audio(x, 16000).array, x)
    np.testing.assert_array_equal(load_audio(torch.from_numpy(x), 16000).array, x)
    np.testing.assert_array_equal(load_audio(x.astype(np.float64), 16000).array, x)
    stereo = np.stack([x, 0.5 * x])
    np.testing.assert_allclose(load_audio(stereo, 16000).array, stereo.mean(axis=0), atol=1e-7)


def test_dict_resampled_with_soxr_and_extra_keys_kept():
    x = signal(0.5, rate=8000)
    item = {"sampling_rate": 8000, "raw": x, "id": 7}
    audio = load_audio(item, 16000)
    np.testing.assert_allclose(audio.array, soxr.resample(x, 8000, 16000), atol=1e-6)
    assert audio.extra == {"id": 7} and "raw" in item  # the caller's dict is not mutated
    audio = load_audio({"sampling_rate": 16000, "array": x, "path": "a.wav"}, 16000)
    assert audio.extra == {} and audio.stride is None
    assert load_audio({"sampling_rate": 8000, "raw": x, "stride": (400, 400)}, 16000).stride == (8000, 800, 800)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_files_bytes_and_paths(tmp_path, fmt):
    x = signal(0.5, rate=22050)
    data = _wav_bytes(x, 22050, fmt)
    decoded, _ = soundfile.read(io.BytesIO(data), dtype="float32")
    expected = soxr.resample(decoded, 22050, 16000)
    np.testing.assert_allclose(load_audio(data, 16000).array, expected, atol=1e-6)
    path = tmp_path / f"clip.{fmt.lower()}"
    path.write_bytes(data)
    np.testing.assert_allclose(load_audio(str(path), 16000).array, expected, atol=1e-6)
    np.testing.assert_allclose(load_audio(path, 16000).array, expected, atol=1e-6)


def test_mp3_through_pyav():
    av = pytest.importorskip("av")
    x = signal(1.0)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp3") as container:
        stream = container.add_stream("mp3", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    out = load_audio(buffer.getvalue(), 16000).array
    assert out.dtype == np.float32 and abs(len(out) - len(x)) < 2000
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)))  # noqa: E731
    assert abs(rms(out) - rms(x)) < 0.3 * rms(x)  # a decoded signal, not silence or noise of another level


@pytest.mark.parametrize("bad, error, words", [
    ("/no/such/file.wav", OSError, "not an existing audio file"),
    (b"", ValueError, "empty bytes"),
    (b"this is not audio at all" * 10, ValueError, "could not be decoded"),
    (np.zeros(0, np.float32), ValueError, "empty audio"),
    ({"raw": np.zeros(10)}, ValueError, "sampling_rate"),
    ({"sampling_rate": 16000}, ValueError, "'raw' or 'array'"),
    ({"sampling_rate": -1, "raw": np.zeros(10)}, ValueError, "positive int"),
    (np.zeros((3, 100), np.float32), ValueError, "3 channels"),
    (np.zeros((1, 2, 100), np.float32), ValueError, "1-D"),
    (12, TypeError, "got int"),
    (np.array(["a", "b"]), TypeError, "dtype"),
])
def test_bad_inputs(bad, error, words):
    with pytest.raises(error, match=words):
        load_audio(bad, 16000)


@pytest.mark.parametrize("feature_size", [80, 128])
@pytest.mark.parametrize("seconds", [0.05, 7.3, 30.0, 31.5])
def test_whisper_extractor_equals_transformers(feature_size, seconds):
    from transformers import WhisperFeatureExtractor as Theirs

    theirs = Theirs(feature_size=feature_size)
    ours = WhisperFeatureExtractor(**theirs.to_dict())
    x = signal(seconds, seed=3)
    expected = theirs(x, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    got = ours(x)
    np.testing.assert_allclose(got["input_features"].numpy(), expected.input_features[0].numpy(), atol=1e-4)
    np.testing.assert_array_equal(got["attention_mask"].numpy(), expected.attention_mask[0].numpy())
    assert got["num_frames"] == len(x) // 160
    long = theirs(x, sampling_rate=16000, return_tensors="pt", truncation=False, padding="longest")
    if len(x) > ours.n_samples:
        np.testing.assert_allclose(ours(x, truncation=False)["input_features"].numpy(), long.input_features[0].numpy(),
                                   atol=1e-4)


@pytest.mark.parametrize("do_normalize", [True, False])
def test_wav2vec2_extractor_equals_transformers(do_normalize):
    from transformers import Wav2Vec2FeatureExtractor as Theirs

    theirs = Theirs(do_normalize=do_normalize)
    ours = Wav2Vec2FeatureExtractor(**theirs.to_dict())
    for seconds in (0.01, 1.7):
        x = signal(seconds, seed=1).astype(np.float64)
        expected = theirs(x, sampling_rate=16000, return_tensors="pt").input_values[0]
        np.testing.assert_allclose(ours(x)["input_values"].numpy(), expected.numpy(), atol=1e-4)
