"""The base pipeline and the registry keep their promises: every input gets its result, extra positional
arguments are refused by name, one Rust tokenizer call per window of inputs, registration leaves classes alone."""

from __future__ import annotations

import json
import threading

import pytest

import inferline
from inferline import PIPELINE_REGISTRY, SUPPORTED_TASKS, ChunkPipeline, Pipeline
from inferline.processing.tokenizer import Tokenizer
from parity.compare import assert_same

EMPTY = "<nothing>"


class Pieces(ChunkPipeline):
    """One piece per word of the input; EMPTY gives no piece. The result: the word count, and the words' lengths."""

    def _sanitize_parameters(self, **kwargs):
        return {}, {}, {}

    def preprocess(self, text):
        from inferline.pipelines.text import encode, encoding_tensors

        for word in ([] if text == EMPTY else text.split()):
            yield {**encoding_tensors(encode(self, word), self._model_input_names()), "word": word}

    def _forward(self, inputs):
        return {"hidden": self.model(**inputs)}

    def postprocess(self, outputs):
        return {"words": [o["word"] for o in outputs], "tokens": [o["hidden"].shape[1] for o in outputs]}


@pytest.fixture(scope="module")
def encoder_dir(checkpoint):
    return checkpoint("bert", "base")


@pytest.fixture(scope="module")
def pieces(encoder_dir):
    return inferline.pipeline("feature-extraction", model=str(encoder_dir), pipeline_class=Pieces)


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_inputs_without_pieces_keep_their_place(pieces, batch_size):
    texts = [EMPTY, "a b", EMPTY, "c", "d e f", EMPTY, EMPTY]
    expected = [{"words": [] if t == EMPTY else t.split(), "tokens": [] if t == EMPTY else [3] * len(t.split())}
                for t in texts]
    assert pieces(texts, batch_size=batch_size) == expected
    assert list(pieces(iter(texts), batch_size=batch_size)) == expected
    assert pieces(EMPTY, batch_size=batch_size) == {"words": [], "tokens": []}
    many = " ".join("abcdefghijklmnopq")  # more pieces than one window: a lone input takes the windowed path too
    assert pieces(many, batch_size=batch_size) == {"words": many.split(), "tokens": [3] * len(many.split())}


def test_a_lone_item_batch_is_the_stacked_batch():
    """A single request's batch is views with a batch axis (no copy): equal to torch.stack's, key by key."""
    import torch

    from inferline.pipelines.collate import collate

    item = {"input_ids": torch.tensor([101, 7, 102]), "pixel_values": torch.randn(3, 4, 4), "flag": torch.tensor(1)}
    batch, lengths = collate([item], {"input_ids": 0})
    assert lengths == [3] and batch.keys() == item.keys()
    for key, value in item.items():
        assert batch[key].shape == torch.stack([value]).shape and batch[key].dtype == value.dtype
        assert torch.equal(batch[key], torch.stack([value])) and batch[key].is_contiguous()


@pytest.mark.parametrize("values", [[], [0], [101, 2023, 102], [2 ** 40, -3, 0]])
def test_token_id_tensors_equal_torch_tensor(values):
    import torch

    from inferline.pipelines.text import int64_tensor

    got, expected = int64_tensor(values), torch.tensor(values, dtype=torch.long)
    assert got.dtype == torch.long and got.shape == expected.shape and torch.equal(got, expected)


# ----- positional arguments -----
def test_extra_positional_arguments_are_a_type_error(checkpoint):
    import transformers

    path = str(checkpoint("bert", "sequence-classification"))
    ours = inferline.pipeline("text-classification", model=path)
    theirs = transformers.pipeline("text-classification", model=path, device="cpu")
    with pytest.raises(TypeError):
        theirs("one", "two")
    with pytest.raises(TypeError, match="'two'"):
        ours("one", "two")
    fill = inferline.pipeline("fill-mask", model=str(checkpoint("bert", "masked-lm")))
    with pytest.raises(TypeError, match="3"):
        fill("Paris is the [MASK].", 3)


def test_zero_shot_and_qa_take_their_positional_arguments(checkpoint, pipelines):
    theirs, ours = pipelines("zero-shot-classification", checkpoint("bert", "sequence-classification"))
    labels = ["sports", "politics"]
    assert_same(ours("The match ended in a draw.", labels), theirs("The match ended in a draw.", labels))
    assert ours("The match ended.", labels) == ours("The match ended.", candidate_labels=labels)
    with pytest.raises(TypeError, match="'extra'") as error:
        ours("The match ended.", labels, "extra")
    assert isinstance(error.value, ValueError)  # transformers raises a ValueError here
    with pytest.raises(ValueError):
        theirs("The match ended.", labels, "extra")
    with pytest.raises(TypeError, match="candidate_labels"):
        ours("The match ended.", labels, candidate_labels=labels)
    qa_theirs, qa_ours = pipelines("question-answering", checkpoint("bert", "question-answering"))
    question, context = "Where do I live?", "My name is Wolfgang and I live in Berlin."
    assert_same(qa_ours(question, context), qa_theirs(question, context))


# ----- one tokenizer call per window -----
@pytest.fixture
def encode_calls(monkeypatch):
    """Every Tokenizer.encode_batch call: (number of texts, truncation) per call."""
    calls = []
    real = Tokenizer.encode_batch

    def spy(self, texts, *args, **kwargs):
        calls.append((len(texts), kwargs.get("truncation", False)))
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(Tokenizer, "encode_batch", spy)
    return calls


LONG = "word " * 300  # past the tiny models' 128 positions


@pytest.mark.parametrize("task, head, kwargs, texts", [
    ("text-classification", "sequence-classification", {}, ["I love it", LONG, "ok", "fine"] * 3),
    ("feature-extraction", "base", {}, ["I love it", LONG, "ok", "fine"] * 3),
    ("token-classification", "token-classification", {}, ["My name is Wolfgang", LONG, "Berlin"] * 4),
    ("fill-mask", "masked-lm", {}, ["Paris is the [MASK] of France.", "a [MASK] " * 200] * 6),
    ("zero-shot-classification", "sequence-classification", {"candidate_labels": ["a", "b c"]},
     ["I love it", LONG, "ok"] * 4),
])
def test_a_batch_is_tokenised_in_one_call_and_once(checkpoint, pipelines, encode_calls, task, head, kwargs, texts):
    theirs, ours = pipelines(task, checkpoint("bert", head))
    expected = ours(texts, batch_size=1, **kwargs)
    assert len(encode_calls) == len(texts)  # batch_size=1: one item at a time, as before
    encode_calls.clear()
    batched = ours(texts, batch_size=4, **kwargs)
    assert len(encode_calls) == 1, encode_calls  # 12 items in one window of 4 * 8: one call, truncation included
    assert_same(batched, expected, atol=1e-5)
    short = [t for t in texts if len(t) < 100]  # transformers crashes on the long ones (its 512 > the model's 128)
    # (theirs unbatched: transformers' feature-extraction returns batch-padded rows)
    assert_same(ours(short, batch_size=4, **kwargs), theirs(short, batch_size=1, **kwargs))


def test_question_answering_tokenises_the_context_once(checkpoint, pipelines, encode_calls):
    theirs, ours = pipelines("question-answering", checkpoint("bert", "question-answering"))
    context = "My name is Wolfgang and I live in Berlin. " * 40  # several windows
    result = ours(question="Where do I live?", context=context, max_seq_len=64, doc_stride=16)
    assert len(encode_calls) == 2  # the short question alone, then the pair, once
    assert [t for _, t in encode_calls].count("only_second") == 1
    assert_same(result, theirs(question="Where do I live?", context=context, max_seq_len=64, doc_stride=16))


def test_tokenizer_is_thread_safe_across_truncation_settings(checkpoint):
    tokenizer = Tokenizer.from_pretrained(checkpoint("bert", "base"))
    texts = [f"sentence {i} " * (i + 3) for i in range(16)]
    expected = {n: [e[0].ids for e in tokenizer.encode_batch(texts, truncation=True, max_length=n)] for n in (8, 12, 16)}
    errors = []

    def work(n):
        try:
            for _ in range(20):
                assert [e[0].ids for e in tokenizer.encode_batch(texts, truncation=True, max_length=n)] == expected[n]
                assert tokenizer.encode(texts[-1])[0].ids == tokenizer.encode_batch([texts[-1]])[0][0].ids
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in (8, 12, 16) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_word_boundaries_are_a_tokenizer_property(checkpoint):
    import pathlib
    import re

    assert Tokenizer.from_pretrained(checkpoint("bert", "base")).subword_prefix == "##"
    assert Tokenizer.from_pretrained(checkpoint("roberta", "base")).subword_prefix is None
    pipelines_dir = pathlib.Path(inferline.__file__).parent / "pipelines"
    reaching_in = [p.name for p in pipelines_dir.glob("*.py")
                   if re.search(r"tokenizer\W+backend|[\"']backend[\"']", p.read_text())]
    assert not reaching_in  # pipelines ask the tokenizer, never its Rust internals


# ----- the registry -----
class Shout(Pipeline):
    def _sanitize_parameters(self, **kwargs):
        return {}, {}, {}

    def preprocess(self, text):
        from inferline.pipelines.text import encode, encoding_tensors

        return encoding_tensors(encode(self, text.upper()), self._model_input_names())

    def _forward(self, inputs):
        return {"hidden": self.model(**inputs)}

    def postprocess(self, output):
        return f"{self.task}: {output['hidden'].shape[1]} tokens"


def test_one_class_serves_two_tasks_and_is_left_alone(encoder_dir, tmp_path):
    before = dict(vars(Shout))
    for task in ("shout-a", "shout-b"):
        PIPELINE_REGISTRY.register_pipeline(task, Shout, default=str(encoder_dir), heads=("base",))
    try:
        assert dict(vars(Shout)) == before
        a, b = inferline.pipeline("shout-a"), inferline.pipeline("shout-b")
        assert (a("hi"), b("hi")) == ("shout-a: 3 tokens", "shout-b: 3 tokens")
        assert "shout-a" in SUPPORTED_TASKS
        b.save_pretrained(tmp_path / "b")
        saved = json.loads((tmp_path / "b" / "config.json").read_text())
        assert list(saved["custom_pipelines"]) == ["shout-b"]
        assert inferline.pipeline(model=str(tmp_path / "b")).task == "shout-b"
    finally:
        for task in ("shout-a", "shout-b"):
            PIPELINE_REGISTRY.tasks.pop(task, None)


def test_supported_tasks_is_read_only():
    with pytest.raises(TypeError):
        SUPPORTED_TASKS["text-classification"] = None
    with pytest.raises(TypeError):
        SUPPORTED_TASKS["translation"].option_defaults[("en", "xx")] = ("some/model", None)
    with pytest.raises(AttributeError):
        SUPPORTED_TASKS["fill-mask"].default_model = "other/model"
    assert "text-classification" in SUPPORTED_TASKS and SUPPORTED_TASKS["ner" if False else "fill-mask"].heads
