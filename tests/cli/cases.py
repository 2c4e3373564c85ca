"""One row per implemented task for the command-line tests: a tiny checkpoint, inputs, call parameters.

The CLI tests run over `PIPELINE_REGISTRY.implemented_tasks()`; a task that lands without a row here
fails `test_run_task` with a message saying to add one (a vision or audio row names its checkpoint
builder and inputs such as image paths, the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

NLI = dict(id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
           label2id={"contradiction": 0, "neutral": 1, "entailment": 2})
LEGACY_CHAT = "{% for message in messages %}{{ message.content }}{{ eos_token }}{% endfor %}"


@dataclass(frozen=True)
class Case:
    arch: str
    head: str
    inputs: list  # one pipeline input per row: a string, a dict of named inputs, a list of words, ...
    params: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # config overrides for the checkpoint builder
    # (transformers' pipeline, input, params) → the output expected; default: theirs(input, **params)
    expected: Callable | None = None
    compare_key: str | None = None  # compare only this field of our output (e.g. a Conversation's messages)
    oracle_task: str | None = None  # the transformers task to compare with, when it is not the same
    builder: Callable | None = None  # () → checkpoint directory, for checkpoints outside the `checkpoint` fixture


def _conversation(theirs, value, params):
    """transformers 4.57 has no conversational pipeline: its text-generation on the legacy chat format."""
    prompt = "".join(m["content"] + theirs.tokenizer.eos_token for m in value)
    reply = theirs(prompt, return_full_text=False, **params)[0]["generated_text"]
    return value + [{"role": "assistant", "content": reply}]


def _images(folder):
    """Image files of two sizes, given to the command line by path."""
    from PIL import Image

    paths = []
    for i, (size, colour) in enumerate([((40, 30), (200, 30, 90)), ((24, 48), (10, 160, 240))]):
        paths.append(str(folder / f"image{i}.png"))
        Image.new("RGB", size, colour).save(paths[-1])
    return paths


def _sounds(folder):
    """wav files of two lengths at 16 kHz, given to the command line by path."""
    import numpy as np
    import soundfile

    paths = []
    for i, seconds in enumerate((0.5, 1.2)):
        paths.append(str(folder / f"sound{i}.wav"))
        t = np.arange(int(16000 * seconds), dtype=np.float32) / 16000
        soundfile.write(paths[-1], (0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)).astype(np.float32), 16000)
    return paths


def _documents(folder):
    """A rendered page read with OCR (by path), and a document given as word boxes."""
    from fixtures.images import document_image

    path = str(folder / "page.png")
    document_image(["Invoice number: US-001", "Total due: 42 dollars"]).save(path)
    return [{"image": path, "question": "What is the invoice number?"},
            {"image": None, "question": "What is due?",
             "word_boxes": [[w, [60 * i, 10, 60 * i + 50, 30]] for i, w in enumerate("Total due : 42 dollars".split())]}]


def _image_questions(folder):
    """{"image": path, "question": ...} rows over image files of two sizes."""
    return [{"image": path, "question": q} for path, q in zip(_images(folder), ["What colour is it?", "Is it red?"])]


def _decoded(theirs, value, params):
    """transformers reads audio files through a system ffmpeg, which these machines lack: give it the samples."""
    import soundfile

    samples, rate = soundfile.read(value, dtype="float32")
    return theirs({"raw": samples, "sampling_rate": rate}, **params)


def _predicted_depth(theirs, value, params):
    """The map; its grey image may be one level off on a few pixels (tests/vision/test_depth_estimation.py)."""
    return theirs(value, **params)["predicted_depth"].tolist()


def _png_masks(theirs, value, params):
    """The output file holds masks as PNG data URIs: transformers' answer written the same way."""
    import json

    from inferline.records import to_json

    return json.loads(to_json(theirs(value, **params)))


def _vision(arch: str, head: str):
    def build():
        from fixtures.vision_checkpoints import build_vision

        return build_vision(arch, head)
    return build


def _table_qa(theirs, value, params):
    """transformers' TAPAS tokenizer runs on pandas 3 only with tests/parity/tapas_oracle.py's fix."""
    from parity.tapas_oracle import run_on_pandas3

    run_on_pandas3()
    return theirs(value, **params)


TEXTS = ["I love this movie! It was absolutely wonderful.", "The weather today is terrible.", "Paris",
         "Hugging Face is a company based in New York City and Paris."]
QA = [{"question": "Where do I live?", "context": "My name is Wolfgang and I live in Berlin"},
      {"question": "Who am I?", "context": "My name is Sarah and I live in London. I like tea."}]
GENERATE = {"max_new_tokens": 4, "num_beams": 1, "do_sample": False}

CASES = {
    "feature-extraction": Case("bert", "base", TEXTS[:2]),
    # A string (answered with a one-element list) and a text pair (a dict) in the same file.
    "text-classification": Case("bert", "sequence-classification",
                                TEXTS + [{"text": "I like it", "text_pair": "It is good"}]),
    "token-classification": Case("bert", "token-classification", TEXTS + [QA[0]["context"]],
                                 {"aggregation_strategy": "simple"}),
    "question-answering": Case("bert", "question-answering", QA, {"top_k": 2}),
    "fill-mask": Case("bert", "masked-lm", ["Paris is the [MASK] of France.", "[MASK] is [MASK]."], {"top_k": 3}),
    "zero-shot-classification": Case("bert", "sequence-classification", TEXTS,
                                     {"candidate_labels": ["cinema", "weather", "travel"]}, NLI),
    "text-generation": Case("gpt2", "causal-lm", ["Hello there", "The cat sat on"], GENERATE),
    "text2text-generation": Case("t5", "seq2seq-lm", TEXTS[:3], GENERATE),
    "summarization": Case("bart", "seq2seq-lm", TEXTS[:3], GENERATE),
    "translation": Case("marian", "seq2seq-lm", TEXTS[:3], GENERATE),
    "conversational": Case("gpt2", "causal-lm", [[{"role": "user", "content": "Hello there"}]], GENERATE,
                           expected=_conversation, compare_key="messages", oracle_task="text-generation"),
    "image-classification": Case("vit", "image-classification", _images, {"top_k": 2},
                                 builder=_vision("vit", "image-classification")),
    "image-feature-extraction": Case("vit", "base", _images, builder=_vision("vit", "base")),
    "zero-shot-image-classification": Case("clip", "zero-shot-image-classification", _images,
                                           {"candidate_labels": ["cat", "dog"]},
                                           builder=_vision("clip", "zero-shot-image-classification")),
    "object-detection": Case("detr", "object-detection", _images, {"threshold": 0.0},
                             builder=_vision("detr", "object-detection")),
    "depth-estimation": Case("depth_anything", "depth-estimation", _images, expected=_predicted_depth,
                             compare_key="predicted_depth", builder=_vision("depth_anything", "depth-estimation")),
    "zero-shot-object-detection": Case("owlvit", "zero-shot-object-detection", _images,
                                       {"candidate_labels": ["cat", "dog"], "threshold": 0.3},
                                       builder=_vision("owlvit", "zero-shot-object-detection")),
    "image-to-text": Case("vit-gpt2", "vision2seq", _images, {"max_new_tokens": 4},
                          builder=_vision("vit-gpt2", "vision2seq")),
    "image-segmentation": Case("detr-panoptic", "image-segmentation", _images,
                               {"threshold": 0.0, "mask_threshold": 0.1}, expected=_png_masks,
                               builder=_vision("detr-panoptic", "image-segmentation")),
    "audio-classification": Case("wav2vec2", "audio-classification", _sounds, {"top_k": 2}, expected=_decoded),
    "automatic-speech-recognition": Case("wav2vec2", "ctc", _sounds, expected=_decoded),
    "table-question-answering": Case("tapas-wtq", "table-question-answering", [
        {"table": {"City": ["Paris", "Berlin", "Rome"], "Founded": ["52 BC", "1237", "753 BC"]},
         "query": "Which city is the oldest?"},
        {"table": {"Year": ["1999", "2001"], "Event": ["first flight", ""]}, "query": ["When?", "How many events?"]},
        {"table": {"n": ["one", "2", "3rd"]}, "query": "the sum"}], expected=_table_qa),
    "document-question-answering": Case("layoutlm", "document-question-answering", _documents, {"top_k": 2},
                                        builder=_vision("layoutlm", "document-question-answering")),
    "visual-question-answering": Case("vilt", "visual-question-answering", _image_questions, {"top_k": 2},
                                      builder=_vision("vilt", "visual-question-answering")),
}
