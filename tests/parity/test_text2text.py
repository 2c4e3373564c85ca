"""text2text-generation, summarization and translation parity with transformers 4.57.6, over every encoder-decoder
architecture: greedy and beam search, generation settings from construction, call, generation_config.json and
task_specific_params (T5's prefixes), language-coded tokenizers (mBART-50), list shapes and batch invariance."""

from __future__ import annotations

import logging
import warnings
from collections import Counter

import pytest
import torch

from parity.archs import SEQ2SEQ_ARCHS
from parity.compare import assert_same

TEXTS = ["Paris is the capital of France.", "Hello world",
         "The quick brown fox jumps over the lazy dog near the river.", "It is",
         "Hugging Face is a company based in New York City and Paris."]
CALLS = [
    {"max_new_tokens": 8, "num_beams": 1},  # greedy
    {"max_new_tokens": 8},  # the pipeline default: beam search with 4 beams
    {"max_new_tokens": 6, "num_beams": 3, "num_return_sequences": 2},
    {"max_new_tokens": 6, "num_beams": 1, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2, "min_new_tokens": 4},
]
# T5's own task_specific_params, with short lengths so the tiny models stay fast.
T5_TASK_PARAMS = {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 12, "min_length": 5,
                      "no_repeat_ngram_size": 3, "num_beams": 3, "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 10, "num_beams": 2,
                             "prefix": "translate English to German: "},
}


@pytest.fixture(scope="module", autouse=True)
def quiet():
    logging.getLogger("transformers").setLevel(logging.ERROR)


def t5_with_task_params(checkpoint):
    return checkpoint("t5", "seq2seq-lm", task_specific_params=T5_TASK_PARAMS)


@pytest.fixture(params=SEQ2SEQ_ARCHS)
def pair(request, checkpoint, pipelines):
    return pipelines("text2text-generation", checkpoint(request.param, "seq2seq-lm"))


@pytest.mark.parametrize("kwargs", CALLS, ids=str)
def test_generate_single_and_list(pair, kwargs):
    theirs, ours = pair
    assert_same(ours(TEXTS[0], **kwargs), theirs(TEXTS[0], **kwargs))
    assert_same(ours(TEXTS[:2], **kwargs), theirs(TEXTS[:2], **kwargs))  # flat list, or list of lists when n > 1


def varied_eos(theirs) -> int:
    """A token the model emits for about half of TEXTS: as EOS it makes outputs end at different steps."""
    outputs = [theirs(t, max_new_tokens=7, num_beams=1, return_tensors=True)[0]["generated_token_ids"][1:].tolist()
               for t in TEXTS]
    counts = Counter(token for output in outputs for token in set(output))
    return min(counts, key=lambda t: (abs(counts[t] - len(TEXTS) / 2), t))


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_batched_equals_unbatched(pair, batch_size, num_beams):
    theirs, ours = pair
    kwargs = {"max_new_tokens": 7, "num_beams": num_beams, "eos_token_id": varied_eos(theirs)}
    expected = theirs(TEXTS, **kwargs)
    assert_same(ours(TEXTS, batch_size=batch_size, **kwargs), expected)
    lazy = ours((t for t in TEXTS), batch_size=batch_size, **kwargs)
    assert not isinstance(lazy, list)
    assert_same([r[0] for r in lazy], expected)
    # Deliberate: transformers pads token ids to the batch's longest output; we cut each back to its input's own
    # length, so batched == unbatched (compared with transformers unbatched).
    single = [theirs(t, return_tensors=True, **kwargs)[0] for t in TEXTS]
    result = ours(TEXTS, batch_size=batch_size, return_tensors=True, **kwargs)
    assert_same(result, single)
    if num_beams == 1:  # the outputs did end at different steps
        assert len({len(r["generated_token_ids"]) for r in result}) > 1


def test_construction_kwargs_and_call_override(checkpoint, pipelines):
    theirs, ours = pipelines("text2text-generation", checkpoint("bart", "seq2seq-lm"), max_new_tokens=5, num_beams=1)
    assert_same(ours(TEXTS[0]), theirs(TEXTS[0]))
    assert_same(ours(TEXTS[0], max_new_tokens=3), theirs(TEXTS[0], max_new_tokens=3))
    assert_same(ours(TEXTS[0], num_beams=2, length_penalty=0.5), theirs(TEXTS[0], num_beams=2, length_penalty=0.5))


def test_generation_config_argument(checkpoint, pipelines):
    import transformers

    from inferline.generation import GenerationConfig

    theirs, ours = pipelines("text2text-generation", checkpoint("t5", "seq2seq-lm"))
    assert_same(ours(TEXTS[1], generation_config=GenerationConfig(max_new_tokens=4, num_beams=2)),
                theirs(TEXTS[1], generation_config=transformers.GenerationConfig(max_new_tokens=4, num_beams=2)))


def test_return_tensors_and_return_text(pair):
    theirs, ours = pair
    kwargs = {"max_new_tokens": 5, "num_beams": 1}
    result = ours(TEXTS[0], return_tensors=True, **kwargs)
    assert list(result[0]) == ["generated_token_ids"] and isinstance(result[0]["generated_token_ids"], torch.Tensor)
    assert_same(result, theirs(TEXTS[0], return_tensors=True, **kwargs))
    # transformers accepts return_text but decides the output by return_tensors alone: text stays on.
    assert_same(ours(TEXTS[0], return_text=False, **kwargs), theirs(TEXTS[0], return_text=False, **kwargs))


@pytest.mark.parametrize("clean", [None, True, False])
def test_clean_up_tokenization_spaces(checkpoint, pipelines, clean):
    """Decoding of given ids (random tiny models rarely emit ' ,' on their own)."""
    theirs, ours = pipelines("text2text-generation", checkpoint("bart", "seq2seq-lm"))
    ids = theirs.tokenizer("Hello , world . It 's fine !", add_special_tokens=False).input_ids
    output = {"output_ids": torch.tensor([[[2, 0, *ids, 2]]])}
    kwargs = {} if clean is None else {"clean_up_tokenization_spaces": clean}
    expected = theirs.postprocess(output, **kwargs)
    assert_same(ours.postprocess({**output, "lengths": torch.tensor([len(ids) + 3])}, **kwargs), expected)
    assert_same(ours(TEXTS[0], max_new_tokens=4, **kwargs), theirs(TEXTS[0], max_new_tokens=4, **kwargs))


def test_stop_sequence(checkpoint, pipelines):
    theirs, ours = pipelines("text2text-generation", checkpoint("t5", "seq2seq-lm"))
    stop = theirs(TEXTS[0], max_new_tokens=6, num_beams=1, return_tensors=True)[0]["generated_token_ids"][3]
    word = theirs.tokenizer.decode([int(stop)])
    kwargs = {"max_new_tokens": 6, "num_beams": 1, "stop_sequence": word}
    assert_same(ours(TEXTS[0], **kwargs), theirs(TEXTS[0], **kwargs))


def test_streamer(checkpoint, pipelines):
    from inferline.generation import TextIteratorStreamer

    theirs, ours = pipelines("text2text-generation", checkpoint("t5-gated", "seq2seq-lm"))
    streamer = TextIteratorStreamer(ours.tokenizer, skip_prompt=True, skip_special_tokens=True)
    result = ours(TEXTS[0], max_new_tokens=6, num_beams=1, streamer=streamer, use_cache=True)
    assert_same(result, theirs(TEXTS[0], max_new_tokens=6, num_beams=1))
    assert "".join(streamer) == result[0]["generated_text"]


# ----- summarization -----
@pytest.mark.parametrize("arch", ["bart", "t5"])
def test_summarization_lengths(checkpoint, pipelines, arch):
    theirs, ours = pipelines("summarization", checkpoint(arch, "seq2seq-lm"))
    text = " ".join(TEXTS)
    for kwargs in ({"min_length": 4, "max_length": 9, "max_new_tokens": None},
                   {"min_length": 6, "max_length": 9, "max_new_tokens": None, "num_beams": 1},
                   {"min_new_tokens": 3, "max_new_tokens": 6}):
        result = ours(text, **kwargs)
        assert list(result[0]) == ["summary_text"]
        assert_same(result, theirs(text, **kwargs))
    assert_same(ours([text, TEXTS[1]], max_new_tokens=5, return_tensors=True),
                theirs([text, TEXTS[1]], max_new_tokens=5, return_tensors=True))


@pytest.mark.parametrize("arch", ["bart", "t5"])
def test_summarization_batched_and_generator(checkpoint, pipelines, arch):
    theirs, ours = pipelines("summarization", checkpoint(arch, "seq2seq-lm"))
    texts = [" ".join(TEXTS), TEXTS[1], TEXTS[2], " ".join(TEXTS[2:])]
    eos = varied_eos(pipelines("text2text-generation", checkpoint(arch, "seq2seq-lm"))[0])  # rows end apart
    for kwargs in ({"max_new_tokens": 6}, {"max_new_tokens": 6, "num_beams": 1, "eos_token_id": eos}):
        expected = theirs(texts, **kwargs)
        for batch_size in (1, 3):
            assert_same(ours(texts, batch_size=batch_size, **kwargs), expected)
        lazy = ours((t for t in texts), batch_size=3, **kwargs)
        assert not isinstance(lazy, list)
        assert_same([r[0] for r in lazy], expected)


@pytest.mark.parametrize("construction", [{}, {"max_length": 9}], ids=["call", "construction"])
def test_max_length_is_honoured(checkpoint, pipelines, construction):
    """Deliberate: documented, max_length bounds the output; transformers 4.57.6 overrides a given max_length with
    its pipeline default max_new_tokens=256 (so it must be told max_new_tokens=None to agree)."""
    path = checkpoint("bart", "seq2seq-lm")
    theirs, ours = pipelines("summarization", path)
    _, built = pipelines("summarization", path, **construction)
    text = " ".join(TEXTS)
    call = {} if construction else {"max_length": 9}
    result = built(text, min_length=4, return_tensors=True, **call)
    assert len(result[0]["summary_token_ids"]) <= 9
    assert_same(result, theirs(text, min_length=4, max_length=9, max_new_tokens=None, return_tensors=True))
    # An explicit max_new_tokens still wins over max_length, in both libraries.
    kwargs = {"max_length": 4, "max_new_tokens": 6, "num_beams": 1, "return_tensors": True}
    assert_same(ours(text, **kwargs), theirs(text, **kwargs))


def test_checkpoint_generation_defaults(checkpoint, pipelines):
    """distilbart-cnn style: generation settings in the checkpoint win over the pipeline defaults. Its max_length
    displaces the pipeline's max_new_tokens=256 (in both libraries)."""
    path = checkpoint("bart", "seq2seq-lm", max_length=9, min_length=3, num_beams=2, no_repeat_ngram_size=2,
                      length_penalty=2.0, early_stopping=True)
    theirs, ours = pipelines("summarization", path)
    config = ours.generation_config
    assert (config.max_new_tokens, config.max_length, config.num_beams) == (None, 9, 2)
    text = " ".join(TEXTS)
    # Deliberate: documented, the checkpoint's num_beams=2 beats the pipeline default 4 (transformers 4.57.6 uses 4).
    assert_same(ours(text, return_tensors=True), theirs(text, num_beams=2, return_tensors=True))
    assert_same(ours(text, num_beams=4, return_tensors=True), theirs(text, return_tensors=True))
    assert_same(ours(text, num_beams=1, max_length=7), theirs(text, num_beams=1, max_length=7))


def test_summarization_warns_like_transformers(checkpoint, pipelines, caplog):
    _, ours = pipelines("summarization", checkpoint("bart", "seq2seq-lm"))
    with caplog.at_level(logging.WARNING, logger="inferline"):
        ours(TEXTS[1], max_new_tokens=3, min_length=25)  # input shorter than max_length (20) < min_length
    assert "input_length is only" in caplog.text and "min_length=25 must be inferior" in caplog.text


def test_summarization_task_specific_params(checkpoint, pipelines):
    """T5: task_specific_params["summarization"] supplies the prefix and generation settings."""
    path = t5_with_task_params(checkpoint)
    theirs, ours = pipelines("summarization", path)
    assert ours.prefix == theirs.prefix == "summarize: "
    config = ours.generation_config
    assert (config.num_beams, config.no_repeat_ngram_size, config.max_length, config.max_new_tokens) == (3, 3, 12, None)
    text = " ".join(TEXTS)
    # Deliberate: the task's max_length=12 rules (transformers 4.57.6 keeps its max_new_tokens=256 over it).
    assert_same(ours(text), theirs(text, max_new_tokens=None))
    assert_same(ours(text, max_new_tokens=None), theirs(text, max_new_tokens=None))
    # Deliberate: construction kwargs beat the checkpoint's task_specific_params (transformers: the reverse).
    _, built = pipelines("summarization", path, num_beams=1)
    assert_same(built(text, max_new_tokens=6), theirs(text, max_new_tokens=6, num_beams=1))
    assert_same(ours(text, max_new_tokens=6, num_beams=1), theirs(text, max_new_tokens=6, num_beams=1))
    assert_same(ours([text, TEXTS[0]], max_new_tokens=5, return_tensors=True),
                theirs([text, TEXTS[0]], max_new_tokens=5, return_tensors=True))


# ----- translation -----
def test_translation_t5_prefix(checkpoint, pipelines):
    theirs, ours = pipelines("translation_en_to_de", t5_with_task_params(checkpoint))
    assert ours.prefix == theirs.prefix == "translate English to German: "
    for kwargs in ({"max_new_tokens": None}, {"max_new_tokens": 6}, {"max_new_tokens": 5, "return_tensors": True}):
        assert_same(ours(TEXTS[0], **kwargs), theirs(TEXTS[0], **kwargs))
        assert_same(ours(TEXTS[:3], **kwargs), theirs(TEXTS[:3], **kwargs))


def test_translation_task_picks_checkpoint_pair(checkpoint):
    """pipeline("translation") on a checkpoint with translation_XX_to_YY params uses the first, with a warning."""
    import inferline

    with pytest.warns(UserWarning, match="defaulting to \"translation_en_to_de\""):
        ours = inferline.pipeline("translation", model=str(t5_with_task_params(checkpoint)), device="cpu")
    assert ours.task == "translation_en_to_de" and ours.prefix == "translate English to German: "


@pytest.mark.parametrize("task", ["translation_en_to_fr", "translation"])
def test_translation_marian(checkpoint, pipelines, task):
    theirs, ours = pipelines(task, checkpoint("marian", "seq2seq-lm"))
    for kwargs in ({"max_new_tokens": 8}, {"max_new_tokens": 6, "num_beams": 1, "return_tensors": True}):
        result = ours(TEXTS[0], **kwargs)
        assert list(result[0])[0].startswith("translation_")
        assert_same(result, theirs(TEXTS[0], **kwargs))
        assert_same(ours(TEXTS, batch_size=8, **kwargs), theirs(TEXTS, **kwargs) if "return_tensors" not in kwargs
                    else [theirs(t, **kwargs)[0] for t in TEXTS])


def test_translation_generator(checkpoint, pipelines):
    theirs, ours = pipelines("translation_en_to_fr", checkpoint("marian", "seq2seq-lm"))
    kwargs = {"max_new_tokens": 6}
    expected = theirs(TEXTS, **kwargs)
    for batch_size in (1, 4):
        lazy = ours((t for t in TEXTS), batch_size=batch_size, **kwargs)
        assert not isinstance(lazy, list)
        assert_same([r[0] for r in lazy], expected)


def test_translation_language_codes(checkpoint, pipelines):
    """mBART-50: inputs are marked with src_lang, and tgt_lang is forced as the first generated token."""
    theirs, ours = pipelines("translation", checkpoint("mbart-50", "seq2seq-lm"), src_lang="en_XX",
                             tgt_lang="ro_RO", max_new_tokens=6)
    for kwargs in ({}, {"src_lang": "fr_XX", "tgt_lang": "de_DE"}, {"return_tensors": True}, {"tgt_lang": "fr_XX"}):
        assert_same(ours(TEXTS[0], **kwargs), theirs(TEXTS[0], **kwargs))
        assert_same(ours(TEXTS[:3], batch_size=2, **kwargs), theirs(TEXTS[:3], **kwargs))
    ids = ours(TEXTS[0], src_lang="de_DE", tgt_lang="fr_XX", return_tensors=True)[0]["translation_token_ids"]
    assert int(ids[1]) == ours.tokenizer.convert_tokens_to_ids("fr_XX")
    assert ours.tokenizer.encode(TEXTS[0])[0].ids[0] == ours.tokenizer.convert_tokens_to_ids("en_XX")  # unchanged


def test_translation_language_codes_required(checkpoint, pipelines):
    theirs, ours = pipelines("translation", checkpoint("mbart-50", "seq2seq-lm"))
    with pytest.raises(ValueError, match="src_lang"):
        theirs(TEXTS[0])
    with pytest.raises(ValueError, match="src_lang"):
        ours(TEXTS[0])


def test_translation_xx_to_yy_keeps_explicit_languages(checkpoint):
    """Deliberate: transformers re-derives src/tgt from the task name at every call, overriding the languages given
    at construction ("en" is no mBART-50 code); we keep what the caller chose."""
    import inferline

    path = str(checkpoint("mbart-50", "seq2seq-lm"))
    ours = inferline.pipeline("translation_en_to_ro", model=path, device="cpu", src_lang="en_XX", tgt_lang="ro_RO")
    direct = inferline.pipeline("translation", model=path, device="cpu", src_lang="en_XX", tgt_lang="ro_RO")
    assert_same(ours(TEXTS[0], max_new_tokens=5, return_tensors=True),
                direct(TEXTS[0], max_new_tokens=5, return_tensors=True))


# ----- truncation and errors -----
def test_truncation(checkpoint, pipelines):
    theirs, ours = pipelines("text2text-generation", checkpoint("t5", "seq2seq-lm"))
    long = " ".join(TEXTS * 30)  # > 512 tokens: T5 takes it whole unless asked to truncate
    assert len(ours.tokenizer.encode(long)[0].ids) > 512
    for kwargs in ({}, {"truncation": True}, {"truncation": "only_first"}):
        assert_same(ours(long, max_new_tokens=4, num_beams=1, **kwargs),
                    theirs(long, max_new_tokens=4, num_beams=1, **kwargs))


def test_input_longer_than_model(checkpoint, pipelines, caplog):
    """Deliberate: BART has 128 positions here; transformers fails with an IndexError inside the model. We cut the
    input to what the model takes (with a warning), or raise a clear error with truncation=False."""
    theirs, ours = pipelines("text2text-generation", checkpoint("bart", "seq2seq-lm"))
    long = " ".join(TEXTS * 10)
    assert len(ours.tokenizer.encode(long)[0].ids) > 128
    kwargs = {"max_new_tokens": 3, "num_beams": 1}
    with caplog.at_level(logging.WARNING, logger="inferline"):
        result = ours(long, **kwargs)
    assert "truncated" in caplog.text
    saved = theirs.tokenizer.model_max_length
    theirs.tokenizer.model_max_length = 128  # transformers, told to truncate to what the model takes
    try:
        assert_same(result, theirs(long, truncation=True, **kwargs))
    finally:
        theirs.tokenizer.model_max_length = saved
    with pytest.raises(ValueError, match="at most 128"):
        ours(long, max_new_tokens=3, truncation=False)


@pytest.mark.parametrize("inputs, error", [("", ValueError), ("   ", ValueError), (None, ValueError),
                                           (123, TypeError), ([TEXTS[0], 5], TypeError), ([], ValueError)])
def test_bad_inputs(checkpoint, pipelines, inputs, error):
    _, ours = pipelines("text2text-generation", checkpoint("t5", "seq2seq-lm"))
    with pytest.raises(error):
        ours(inputs, max_new_tokens=3)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_new_tokens": 0}, ValueError, "max_new_tokens"),
    ({"max_new_tokens": -2}, ValueError, "max_new_tokens"),
    ({"num_beams": 2, "num_return_sequences": 3}, ValueError, "num_return_sequences"),
    ({"num_beams": 0}, ValueError, "num_beams"),
    ({"max_new_tokens": 3, "not_a_parameter": 1}, TypeError, "not_a_parameter"),
])
def test_bad_parameters(checkpoint, pipelines, kwargs, error, match):
    import inferline

    path = checkpoint("t5", "seq2seq-lm")
    _, ours = pipelines("text2text-generation", path)
    with pytest.raises(error, match=match):
        ours(TEXTS[0], **kwargs)
    with pytest.raises(error, match=match):  # at construction too
        inferline.pipeline("text2text-generation", model=str(path), device="cpu", **kwargs)


def test_needs_encoder_decoder(checkpoint):
    import inferline

    with pytest.raises(ValueError, match="needs one of: seq2seq-lm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inferline.pipeline("text2text-generation", model=str(checkpoint("bert", "masked-lm")), device="cpu")
