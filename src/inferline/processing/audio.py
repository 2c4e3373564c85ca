"""Audio input (`load_audio`, any input form) and the feature extractors of preprocessor_config.json.

Decoding uses the `audio` extra: soundfile for wav/flac/ogg, PyAV (its wheels bundle the ffmpeg
libraries) for mp3/m4a/webm/opus, soxr for resampling. Extractors match transformers 4.57.6:
`Wav2Vec2FeatureExtractor` (zero-mean unit-variance `input_values`) and `WhisperFeatureExtractor`
(log-mel `input_features` over a fixed window).
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

_EXTRA = 'pip install "inferline[audio]"'
_ACCEPTED = ("a local path or http(s) URL, raw bytes of an audio file, a 1-D numpy array or torch tensor, "
             "(channels, samples) with at most 2 channels, or a dict {'sampling_rate': int, 'raw' | 'array': array}")


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"Reading audio needs the `{module}` package: {_EXTRA}.") from error


class Audio(NamedTuple):
    """One input made ready for an extractor: mono float32 at the extractor's rate."""

    array: np.ndarray
    extra: dict  # dict keys transformers passes through to the output
    stride: tuple[int, int, int] | None  # (samples, left, right) from a dict's "stride", at the target rate


def load_audio(inputs: Any, sampling_rate: int, name: str = "inputs") -> Audio:
    """Any accepted input form → `Audio` (mono float32 at `sampling_rate`).

    >>> load_audio({"sampling_rate": 8000, "raw": np.zeros(8000)}, 16000).array.shape
    (16000,)
    """
    extra: dict = {}
    stride = None
    if isinstance(inputs, os.PathLike):
        inputs = os.fspath(inputs)
    if isinstance(inputs, str):
        inputs = _read_source(inputs, name)
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        array = decode_audio(bytes(inputs), sampling_rate, name)
    elif isinstance(inputs, dict):
        inputs = dict(inputs)  # never mutate the caller's dict
        if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
            raise ValueError(f"A dict given as `{name}` needs a 'sampling_rate' key and a 'raw' or 'array' key "
                             f"holding the samples; got keys {sorted(inputs)}.")
        stride = inputs.pop("stride", None)
        array = inputs.pop("raw", None)
        if array is None:
            inputs.pop("path", None)
            array = inputs.pop("array", None)
        rate = inputs.pop("sampling_rate")
        if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
            raise ValueError(f"`{name}['sampling_rate']` must be a positive int; got {rate!r}.")
        extra = inputs
        array = _as_mono(array, name)
        ratio = sampling_rate / int(rate)
        if int(rate) != sampling_rate:
            array = resample(array, int(rate), sampling_rate)
        if stride is not None:
            if stride[0] + stride[1] > len(array) / ratio:
                raise ValueError(f"`{name}['stride']` {tuple(stride)} is too large for an input of "
                                 f"{round(len(array) / ratio)} samples.")
            stride = (len(array), int(round(stride[0] * ratio)), int(round(stride[1] * ratio)))
    else:
        array = _as_mono(inputs, name)
    if array.size == 0:
        raise ValueError(f"`{name}` holds no audio samples (empty audio).")
    return Audio(array, extra, stride)


def _read_source(source: str, name: str) -> bytes:
    if source.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(source, timeout=60) as response:  # noqa: S310 (http(s) only)
                return response.read()
        except OSError as error:
            raise OSError(f"Could not download the audio `{name}` from {source!r}: {error}.") from error
    if not os.path.isfile(source):
        raise OSError(f"`{name}` is a string but not an existing audio file or http(s) URL: {source!r}. "
                      f"Accepted: {_ACCEPTED}.")
    with open(source, "rb") as handle:
        return handle.read()


def decode_audio(data: bytes, sampling_rate: int, name: str = "inputs") -> np.ndarray:
    """An audio file's bytes → mono float32 at `sampling_rate`: soundfile first, then PyAV."""
    if not data:
        raise ValueError(f"`{name}` is empty bytes; pass the content of an audio file.")
    soundfile = _require("soundfile")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (T, C)
    except (RuntimeError, soundfile.LibsndfileError, TypeError):
        return _decode_with_av(data, sampling_rate, name)
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return resample(mono, rate, sampling_rate) if rate != sampling_rate else np.ascontiguousarray(mono)


def _decode_with_av(data: bytes, sampling_rate: int, name: str) -> np.ndarray:
    av = _require("av")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise ValueError(f"`{name}` is a media file without an audio stream.")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
            pieces = []
            for frame in container.decode(audio=0):
                pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except av.FFmpegError as error:
        raise ValueError(f"`{name}`: the bytes could not be decoded as audio (tried soundfile and PyAV/ffmpeg): "
                         f"{error}.") from error
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


def resample(array: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample a 1-D signal with soxr (high quality)."""
    soxr = _require("soxr")
    return soxr.resample(np.asarray(array, dtype=np.float32), rate, target).astype(np.float32, copy=False)


def _as_mono(array: Any, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().float().numpy()
    elif isinstance(array, (list, tuple)) and array and all(isinstance(x, (int, float)) for x in array):
        array = np.asarray(array, dtype=np.float32)
    if not isinstance(array, np.ndarray):
        raise TypeError(f"`{name}` must be {_ACCEPTED}; got {type(array).__name__}.")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"`{name}` must hold numbers; got an array of dtype {array.dtype}.")
    if array.ndim == 2:
        if array.shape[0] > 2:
            raise ValueError(f"`{name}` has shape {array.shape}: (channels, samples) audio may have 1 or 2 "
                             f"channels, which are averaged to mono; got {array.shape[0]} channels.")
        array = array.mean(axis=0)  # transformers' mono conversion
    elif array.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D (samples) or 2-D (channels, samples); got shape {array.shape}.")
    return np.ascontiguousarray(array, dtype=np.float32)


# ----- feature extractors -----
class Wav2Vec2FeatureExtractor:
    """Raw samples → `input_values` (zero-mean unit-variance per input when do_normalize) + `attention_mask`."""

    model_input = "input_values"

    def __init__(self, sampling_rate: int = 16000, padding_value: float = 0.0, do_normalize: bool = True,
                 return_attention_mask: bool = False, feature_size: int = 1, raw: dict | None = None, **_):
        self.sampling_rate, self.padding_value = int(sampling_rate), float(padding_value)
        self.do_normalize, self.return_attention_mask, self.feature_size = do_normalize, return_attention_mask, feature_size
        self.raw = raw or {}

    def __call__(self, array: np.ndarray, **_) -> dict[str, torch.Tensor]:
        values = np.asarray(array, dtype=np.float32)
        if self.do_normalize:
            values = (values - values.mean()) / np.sqrt(values.var() + 1e-7)
        return {"input_values": torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)),
                "attention_mask": torch.ones(len(values), dtype=torch.long)}

    def save_pretrained(self, folder) -> None:
        _save_config(self.raw, folder)


def mel_filter_bank(num_frequency_bins: int, num_mel_filters: int, sampling_rate: int,
                    min_frequency: float = 0.0, max_frequency: float | None = None) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular mel filters, (num_frequency_bins, num_mel_filters)."""
    max_frequency = sampling_rate / 2 if max_frequency is None else max_frequency
    log_step = math.log(6.4) / 27.0

    def to_mel(hz):  # linear below 1 kHz, logarithmic above
        hz = np.asarray(hz, dtype=np.float64)
        return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step, 3.0 * hz / 200.0)

    def to_hz(mel):
        mel = np.asarray(mel, dtype=np.float64)
        return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), 200.0 * mel / 3.0)

    mels = np.linspace(to_mel(min_frequency), to_mel(max_frequency), num_mel_filters + 2)
    edges = to_hz(mels)  # (M + 2,)
    bins = np.linspace(0, sampling_rate // 2, num_frequency_bins)
    widths = np.diff(edges)
    offsets = edges[None, :] - bins[:, None]  # (F, M + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


class WhisperFeatureExtractor:
    """Raw samples → log-mel `input_features` (feature_size, nb_max_frames) over a `chunk_length` window."""

    model_input = "input_features"

    def __init__(self, feature_size: int = 80, sampling_rate: int = 16000, hop_length: int = 160,
                 chunk_length: int = 30, n_fft: int = 400, padding_value: float = 0.0, dither: float = 0.0,
                 n_samples: int | None = None, nb_max_frames: int | None = None, raw: dict | None = None, **_):
        self.feature_size, self.sampling_rate, self.hop_length = int(feature_size), int(sampling_rate), int(hop_length)
        self.chunk_length, self.n_fft, self.padding_value = chunk_length, int(n_fft), float(padding_value)
        self.dither = float(dither)
        # transformers recomputes both from chunk_length whatever the file says
        self.n_samples = int(chunk_length * sampling_rate)
        self.nb_max_frames = self.n_samples // self.hop_length
        self.mel_filters = torch.from_numpy(
            mel_filter_bank(1 + self.n_fft // 2, self.feature_size, self.sampling_rate, 0.0, 8000.0)).float()
        self.window = torch.hann_window(self.n_fft)
        self.raw = raw or {"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": feature_size,
                           "sampling_rate": sampling_rate, "hop_length": hop_length, "chunk_length": chunk_length,
                           "n_fft": n_fft, "padding_value": padding_value, "return_attention_mask": False,
                           "n_samples": self.n_samples, "nb_max_frames": self.nb_max_frames}

    def __call__(self, array: np.ndarray, truncation: bool = True, **_) -> dict[str, torch.Tensor]:
        samples = torch.from_numpy(np.asarray(array, dtype=np.float32))
        num_frames = len(samples) // self.hop_length  # of the whole input, as transformers counts
        length = self.n_samples if truncation or len(samples) <= self.n_samples else len(samples)
        samples = samples[:length]
        padded = torch.full((length,), self.padding_value, dtype=torch.float32)
        padded[: len(samples)] = samples
        mask = torch.zeros(length, dtype=torch.long)
        mask[: len(samples)] = 1
        frames_mask = mask[:: self.hop_length]
        if length % self.hop_length:
            frames_mask = frames_mask[:-1]
        return {"input_features": self.log_mel(padded), "attention_mask": frames_mask,
                "num_frames": num_frames}

    def log_mel(self, samples: torch.Tensor) -> torch.Tensor:
        """(T,) samples → (feature_size, T // hop_length) log-mel, Whisper's normalisation."""
        if self.dither:
            samples = samples + self.dither * torch.randn(samples.shape)
        stft = torch.stft(samples, self.n_fft, self.hop_length, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2  # (F, frames); the last frame is dropped
        log_spec = torch.clamp(self.mel_filters.T @ power, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0

    def save_pretrained(self, folder) -> None:
        _save_config(self.raw, folder)


def _save_config(raw: dict, folder) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "preprocessor_config.json").write_text(json.dumps(raw, indent=2) + "\n")


# feature_extractor_type in preprocessor_config.json → extractor class
FEATURE_EXTRACTORS = {"Wav2Vec2FeatureExtractor": Wav2Vec2FeatureExtractor,
                      "WhisperFeatureExtractor": WhisperFeatureExtractor}


def feature_extractor_from_config(config: dict):
    """Build the extractor a preprocessor_config.json names; None when it names no audio extractor."""
    cls = FEATURE_EXTRACTORS.get(str(config.get("feature_extractor_type", "")))
    return None if cls is None else cls(**config, raw=dict(config))
