"""The Pipeline contract: input forms, parameters, batching, registry, save_pretrained, threads."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

import inferline
from inferline import PIPELINE_REGISTRY, Pipeline

TEXTS = ["I love it", "This is terrible and I want my money back", "ok", "Paris is the capital of France."]


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return inferline.pipeline("sentiment-analysis", model=str(checkpoint("bert", "sequence-classification")),
                              device="cpu")


def test_list_generator_and_dataset_forms(classifier):
    expected = [classifier(t)[0] for t in TEXTS]
    assert classifier(TEXTS) == expected
    lazy = classifier(iter(TEXTS))
    assert not isinstance(lazy, list) and list(lazy) == expected

    class Dataset:  # anything with __len__/__getitem__
        def __len__(self):
            return len(TEXTS)

        def __getitem__(self, i):
            return TEXTS[i]

    assert list(classifier(Dataset())) == expected
    assert classifier.predict(TEXTS) == expected and classifier.transform(TEXTS) == expected


@pytest.mark.parametrize("batch_size", [2, 3, 8])
def test_batched_equals_unbatched_in_input_order(classifier, batch_size):
    many = TEXTS * 5
    single = classifier(many, top_k=None, batch_size=1)
    assert _close(classifier(many, top_k=None, batch_size=batch_size), single)


def _close(a, b):
    assert len(a) == len(b), f"{len(a)} results != {len(b)}"
    for x, y in zip(a, b):
        assert len(x) == len(y) and [d["label"] for d in x] == [d["label"] for d in y]
        assert all(abs(d["score"] - e["score"]) < 1e-5 for d, e in zip(x, y))
    return True


def test_call_time_parameters_override_construction_time(checkpoint):
    path = str(checkpoint("bert", "sequence-classification"))
    pipe = inferline.pipeline("text-classification", model=path, top_k=2, batch_size=2)
    # transformers wraps this in an extra list ([[...]]) when top_k was given at construction, against its
    # documented "one dict per label"; we return the documented shape.
    assert len(pipe("hello")) == 2 and len(pipe("hello", top_k=3)) == 3
    assert pipe.batch_size == 2


def test_eight_threads_get_their_own_answers(classifier):
    texts = [f"sentence number {i} is {'good' if i % 2 else 'bad'}" for i in range(8)]
    expected = {t: classifier(t, top_k=None) for t in texts}
    results, errors = {}, []

    def work(text):
        try:
            for _ in range(5):
                results[text] = classifier(text, top_k=None)
                assert _close([results[text]], [expected[text]])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(_close([results[t]], [expected[t]]) for t in texts)


def test_outputs_are_json_serialisable(classifier):
    json.dumps(classifier(TEXTS, top_k=None))


def test_save_pretrained_round_trip(classifier, tmp_path):
    import transformers

    classifier.save_pretrained(tmp_path / "saved")
    again = inferline.pipeline("text-classification", model=str(tmp_path / "saved"), device="cpu")
    assert _close([again("I love it", top_k=None)], [classifier("I love it", top_k=None)])
    reference = transformers.pipeline("text-classification", model=str(tmp_path / "saved"), device="cpu")
    assert _close([reference("I love it", top_k=None)], [classifier("I love it", top_k=None)])


def test_task_is_inferred_from_the_config(checkpoint):
    pipe = inferline.pipeline(model=str(checkpoint("bert", "sequence-classification")))
    assert pipe.task == "text-classification"
    assert inferline.pipeline(model=str(checkpoint("bert", "base"))).task == "feature-extraction"


def test_a_built_model_can_be_passed(checkpoint):
    from inferline.models.registry import load_model

    path = checkpoint("bert", "sequence-classification")
    pipe = inferline.pipeline("text-classification", model=load_model(path, "sequence-classification"))
    assert pipe("hello")[0]["label"]


def test_custom_pipeline_through_the_registry(checkpoint):
    class ShoutPipeline(Pipeline):
        """Upper-cases the input, then says how many tokens the model saw."""

        def _sanitize_parameters(self, suffix=None):
            return {}, {}, ({"suffix": suffix} if suffix is not None else {})

        def preprocess(self, text):
            from inferline.pipelines.text import encode, encoding_tensors

            return encoding_tensors(encode(self, text.upper()), self._model_input_names())

        def _forward(self, inputs):
            return {"hidden": self.model(**inputs)}

        def postprocess(self, output, suffix="!"):
            return f"{output['hidden'].shape[1]} tokens{suffix}"

    PIPELINE_REGISTRY.register_pipeline("shout", ShoutPipeline, default=str(checkpoint("bert", "base")),
                                        heads=("base",))
    try:
        assert "shout" in inferline.get_supported_tasks()
        pipe = inferline.pipeline("shout")
        assert pipe("hello world") == "4 tokens!" and pipe(["a", "b c"], suffix="?") == ["3 tokens?", "4 tokens?"]
    finally:
        PIPELINE_REGISTRY.tasks.pop("shout", None)


def test_every_transformers_task_is_registered():
    import transformers.pipelines as reference

    ours = set(inferline.get_supported_tasks())
    assert set(reference.PIPELINE_REGISTRY.get_supported_tasks()) <= ours
    assert "conversational" in ours  # removed in transformers 4.42; kept for older tutorials


def test_unimplemented_task_says_so():
    with pytest.raises(NotImplementedError, match="not implemented yet"):
        inferline.pipeline("image-to-image", model=".")  # fails before touching the model


NLI = dict(id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
           label2id={"contradiction": 0, "neutral": 1, "entailment": 2})
CHAT = [{"role": "user", "content": "Where is Paris?"}]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"


def test_no_task_imports_transformers(checkpoint, tmp_path):
    """Every implemented task, run in a fresh interpreter, leaves no transformers module in sys.modules."""
    from PIL import Image

    from fixtures.vision_checkpoints import build_vision

    image = str(tmp_path / "image.png")
    Image.new("RGB", (40, 30), (200, 30, 90)).save(image)
    calls = [  # (task, checkpoint, inputs, call kwargs)
        ("text-classification", checkpoint("bert", "sequence-classification"), ["hello", "a b"], {"batch_size": 2}),
        ("token-classification", checkpoint("bert", "token-classification"), "Wolfgang lives in Berlin",
         {"aggregation_strategy": "simple"}),
        ("question-answering", checkpoint("bert", "question-answering"),
         {"question": "Where?", "context": "Sarah lives in London."}, {}),
        ("fill-mask", checkpoint("bert", "masked-lm"), "Paris is the [MASK] of France.", {}),
        ("feature-extraction", checkpoint("bert", "base"), "hello", {"pooling": "mean"}),
        ("zero-shot-classification", checkpoint("bert", "sequence-classification", **NLI), "I love it",
         {"candidate_labels": ["cinema", "travel"]}),
        ("text-generation", checkpoint("gpt2", "causal-lm"), ["Hello", "The quick brown fox"],
         {"max_new_tokens": 3, "do_sample": False, "batch_size": 2}),
        ("text-generation", checkpoint("qwen2", "causal-lm"), CHAT,
         {"max_new_tokens": 3, "do_sample": False, "tokenizer_encode_kwargs": {"chat_template": TEMPLATE}}),
        ("conversational", checkpoint("gpt2", "causal-lm"), CHAT, {"max_new_tokens": 3}),
        ("text2text-generation", checkpoint("t5", "seq2seq-lm"), "Hello world", {"max_new_tokens": 3}),
        ("summarization", checkpoint("bart", "seq2seq-lm"), ["Paris is the capital of France.", "Hello"],
         {"max_new_tokens": 3, "batch_size": 2}),
        ("translation_en_to_fr", checkpoint("marian", "seq2seq-lm"), "Hello world", {"max_new_tokens": 3}),
        ("image-classification", build_vision("vit", "image-classification"), [image, image], {"batch_size": 2}),
        ("image-feature-extraction", build_vision("vit", "base"), image, {}),
        ("zero-shot-image-classification", build_vision("clip", "zero-shot-image-classification"), image,
         {"candidate_labels": ["cat", "dog"]}),
        ("object-detection", build_vision("detr", "object-detection"), image, {"threshold": 0.0}),
        ("depth-estimation", build_vision("dpt", "depth-estimation"), image, {}),
        ("depth-estimation", build_vision("depth_anything", "depth-estimation"), [image, image], {"batch_size": 2}),
        ("zero-shot-object-detection", build_vision("owlvit", "zero-shot-object-detection"), image,
         {"candidate_labels": ["cat", "dog"]}),
        ("image-segmentation", build_vision("detr-panoptic", "image-segmentation"), image,
         {"threshold": 0.0, "mask_threshold": 0.1}),
        ("document-question-answering", build_vision("layoutlm", "document-question-answering"),
         {"image": None, "question": "What?", "word_boxes": [("a", [1, 2, 3, 4]), ("b", [5, 6, 7, 8])]}, {}),
        ("audio-classification", checkpoint("wav2vec2", "audio-classification"), "<audio>", {}),
        ("automatic-speech-recognition", checkpoint("wav2vec2", "ctc"), "<audio>", {}),
        ("automatic-speech-recognition", checkpoint("whisper", "speech-seq2seq"), "<audio>",
         {"generate_kwargs": {"num_beams": 1, "max_new_tokens": 3}}),
        ("image-to-text", build_vision("vit-gpt2", "vision2seq"), [image, image],
         {"max_new_tokens": 3, "batch_size": 2}),
        ("image-to-text", build_vision("blip", "vision2seq"), image, {"max_new_tokens": 3, "prompt": "a photo of"}),
        ("table-question-answering", checkpoint("tapas-wtq", "table-question-answering"),
         {"table": {"City": ["Paris", "Rome"], "Founded": ["52 BC", "753 BC"]}, "query": "Which city?"}, {}),
        ("visual-question-answering", build_vision("vilt", "visual-question-answering"),
         {"image": image, "question": "What colour is it?"}, {"top_k": 2}),
    ]
    implemented = {task for task, spec in inferline.SUPPORTED_TASKS.items() if spec.pipeline_class is not None}
    assert implemented <= {task.split("_")[0] for task, *_ in calls}  # a new task adds a call here
    code = (
        "import sys, inferline\n"
        "assert 'torch' not in sys.modules, 'import inferline pulled in torch'\n"
        f"for task, path, inputs, kwargs in {[(t, str(p), i, k) for t, p, i, k in calls]!r}:\n"
        "    if inputs == '<audio>':  # one second of a 440 Hz tone at 16 kHz\n"
        "        import numpy; inputs = numpy.sin(numpy.arange(16000, dtype='float32') * 0.1728)\n"
        "    result = inferline.pipeline(task, model=path, device='cpu')(inputs, **kwargs)\n"
        "    assert result, task\n"
        "    bad = [m for m in sys.modules if m == 'transformers' or m.startswith('transformers.')]\n"
        "    assert not bad, (task, bad[:5])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def transformers_imports(source: str) -> list[str]:
    """Every way a module can name transformers: import / from-import (also `import os, transformers`), and any
    string that is a transformers module path (importlib.import_module("transformers"), __import__, lazy tables)."""
    import ast
    import re

    module = re.compile(r"transformers(\.[\w.]+)?")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if module.fullmatch(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and module.fullmatch(node.module or ""):
            found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and module.fullmatch(node.value):
            found.append(repr(node.value))
    return found


@pytest.mark.parametrize("source, found", [
    ("import os, transformers", ["transformers"]),
    ("from transformers.pipelines import pipeline", ["transformers.pipelines"]),
    ("import importlib\nimportlib.import_module('transformers')", ["'transformers'"]),
    ("__import__('transformers.models.bert')", ["'transformers.models.bert'"]),
    ("def f():\n    import transformers as t", ["transformers"]),
    ("from . import transformers_like\nx = 'transformers 4.57.6 does this'", []),
])
def test_the_import_scan_catches_every_form(source, found):
    assert transformers_imports(source) == found


def test_library_source_never_imports_transformers():
    import pathlib

    root = pathlib.Path(inferline.__file__).parent
    offenders = {str(p.relative_to(root)): hits for p in root.rglob("*.py") if (hits := transformers_imports(p.read_text()))}
    assert not offenders


@pytest.mark.parametrize("device, expected", [("cpu", "cpu"), (-1, "cpu"), ("cpu:0", "cpu:0")])
def test_device_forms(checkpoint, device, expected):
    import torch

    pipe = inferline.pipeline("text-classification", model=str(checkpoint("bert", "sequence-classification")),
                              device=device)
    assert pipe.device == torch.device(expected)
    assert inferline.pipeline("text-classification", model=str(checkpoint("bert", "sequence-classification")),
                              device=torch.device("cpu")).device.type == "cpu"


def test_readme_demo_runs_offline():
    """The README's first set-up command ends in `python -m inferline demo`: it must work with no network."""
    out = subprocess.run([sys.executable, "-m", "inferline", "demo"], check=True, capture_output=True, text=True,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"}).stdout
    assert "384-dimensional embeddings" in out and "Most similar: 'A man is eating food.'" in out
