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
    for x, y in zip(a, b):
        assert [d["label"] for d in x] == [d["label"] for d in y]
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


def test_import_is_lazy_and_never_imports_transformers(checkpoint):
    code = (
        "import sys, inferline\n"
        "assert 'torch' not in sys.modules, 'import inferline pulled in torch'\n"
        f"p = inferline.pipeline('text-classification', model={str(checkpoint('bert', 'sequence-classification'))!r})\n"
        "p('hello'); p(['a', 'b'], batch_size=2)\n"
        "bad = [m for m in sys.modules if m == 'transformers' or m.startswith('transformers.')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_library_source_never_imports_transformers():
    import pathlib
    import re

    root = pathlib.Path(inferline.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+transformers\b", p.read_text(), re.M)]
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
