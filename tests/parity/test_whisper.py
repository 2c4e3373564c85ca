"""Whisper speech recognition parity with transformers 4.57.6 on tiny random checkpoints (the real
tiny.en / base tokenizers and generation settings, random weights): greedy, default beams (5),
language / task, chunked long-form, batch_size 1 and 4, lists and generators.

Segment timestamps are checked on the real weights (test_whisper_real.py): random weights end windows
without a closing timestamp, where transformers re-decodes from the last timestamp (its sequential
long-form loop, which inferline does not implement yet). Word timestamps are checked here on decodes
short enough (max_new_tokens=6) to stay one pass, and on the real weights.
"""

from __future__ import annotations

import pytest

from fixtures.audio import signal, signals
from parity.compare import assert_plain_json, assert_same

SIGNALS = signals()[:3]


@pytest.fixture(params=["whisper-en", "whisper"])
def whisper(request, checkpoint, pipelines):
    theirs, ours = pipelines("automatic-speech-recognition", checkpoint(request.param, "speech-seq2seq"))
    return theirs, ours, {"language": "en"} if request.param == "whisper" else {}


@pytest.mark.parametrize("kwargs", [{"generate_kwargs": {"num_beams": 1}}, {}, {"chunk_length_s": 0.9},
                                    {"generate_kwargs": {"max_new_tokens": 5, "num_beams": 2}}], ids=str)
def test_transcribe(whisper, kwargs):
    theirs, ours, language = whisper
    kwargs = {**kwargs, "generate_kwargs": {**kwargs.get("generate_kwargs", {}), **language}}
    expected = [theirs(x, **kwargs) for x in SIGNALS]
    assert_same(ours(SIGNALS[0], **kwargs), expected[0])
    for batch_size in (1, 4):
        result = ours(SIGNALS, batch_size=batch_size, **kwargs)
        assert_same(result, expected)
    assert_plain_json(result)
    assert_same(list(ours((x for x in SIGNALS), batch_size=4, **kwargs)), expected)


def test_translate_task_and_other_rates(checkpoint, pipelines):
    soxr = pytest.importorskip("soxr")
    theirs, ours = pipelines("automatic-speech-recognition", checkpoint("whisper", "speech-seq2seq"))
    kwargs = {"generate_kwargs": {"num_beams": 1, "language": "fr", "task": "translate"}}
    x = signal(0.8, 22050, seed=5)
    assert_same(ours({"sampling_rate": 22050, "raw": x}, **kwargs), theirs(soxr.resample(x, 22050, 16000), **kwargs))


def test_bad_parameters(whisper):
    _, ours, _ = whisper
    with pytest.raises(ValueError, match="char"):
        ours(SIGNALS[0], return_timestamps="char")
    with pytest.raises(ValueError, match="task"):
        ours(SIGNALS[0], generate_kwargs={"task": "summarise"})
    with pytest.raises(ValueError, match="stride"):
        ours({"sampling_rate": 16000, "raw": SIGNALS[0], "stride": (100, 100)})


def test_detected_language_keeps_the_task_token(checkpoint, pipelines):
    """Whisper's prompt is <|startoftranscript|> <|lang|> <|task|> …; transformers 4.57.6 drops the task token
    when it detects the language itself (and then decodes real speech badly, see test_whisper_real.py). We keep
    it: a detected language decodes as transformers decodes that language given explicitly."""
    import transformers

    theirs, ours = pipelines("automatic-speech-recognition", checkpoint("whisper", "speech-seq2seq"))
    model = transformers.WhisperForConditionalGeneration.from_pretrained(str(checkpoint("whisper", "speech-seq2seq")))
    names = {v: k for k, v in model.generation_config.lang_to_id.items()}
    for x in SIGNALS:
        features = theirs.feature_extractor(x, sampling_rate=16000, return_tensors="pt").input_features
        language = names[int(model.detect_language(features)[0])][2:-2]
        kwargs = {"generate_kwargs": {"num_beams": 1, "max_new_tokens": 5}}
        explicit = {"generate_kwargs": {**kwargs["generate_kwargs"], "language": language, "task": "transcribe"}}
        assert_same(ours(x, **kwargs), theirs(x, **explicit))


@pytest.mark.parametrize("kwargs", [{"generate_kwargs": {"num_beams": 1, "max_new_tokens": 6}},
                                    {"generate_kwargs": {"num_beams": 3, "max_new_tokens": 6}},
                                    {"chunk_length_s": 0.9, "generate_kwargs": {"num_beams": 1, "max_new_tokens": 6}}],
                         ids=str)
def test_word_timestamps(whisper, kwargs):
    """Word chunks from the alignment heads' cross-attention (DTW) equal transformers'; batched rows are
    timed as if decoded alone. Six new tokens at most: longer random decodes close a timestamp pair, after
    which transformers re-decodes from it (see the module docstring)."""
    theirs, ours, language = whisper
    kwargs = {**kwargs, "return_timestamps": "word",
              "generate_kwargs": {**kwargs["generate_kwargs"], **language}}
    expected = [theirs(x, **kwargs) for x in SIGNALS]
    for batch_size in (1, 4):
        assert_same(ours(SIGNALS, batch_size=batch_size, **kwargs), expected)
    assert_plain_json(expected)


def test_word_timestamps_need_alignment_heads(whisper, monkeypatch):
    _, ours, _ = whisper
    monkeypatch.setattr(ours.seq2seq, "settings", {**ours.seq2seq.settings, "alignment_heads": []})
    with pytest.raises(ValueError, match="alignment_heads"):
        ours(SIGNALS[0], return_timestamps="word")
