"""pipeline()'s keywords (config=, tokenizer=, revision=, token=, device_map=, pipeline_class=, model_kwargs=),
each against transformers given the same call where transformers has the feature."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

import inferline
from parity.compare import assert_same
from unit.test_hub import OTHER_COMMIT, make_fake_cache

LONG = "the movie was long and the popcorn was cold but the music was rather good " * 4
TEXTS = ["I love it", LONG]


def both(task, **kwargs):
    """(transformers pipeline, inferline pipeline) built with the same keywords."""
    import transformers

    logging.getLogger("transformers").setLevel(logging.ERROR)
    return transformers.pipeline(task, device="cpu", **kwargs), inferline.pipeline(task, device="cpu", **kwargs)


@pytest.fixture(scope="module")
def classifier_dir(checkpoint):
    return checkpoint("bert", "sequence-classification")


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """A fake hub cache that both libraries read (transformers took its cache path at import time)."""
    import huggingface_hub.constants
    import transformers.utils.hub

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(transformers.utils.hub, "TRANSFORMERS_CACHE", str(cache))
    return cache


# ----- config= -----
def test_config_directory_is_honoured(tmp_path, classifier_dir):
    config = json.loads((classifier_dir / "config.json").read_text())
    config["id2label"] = {"0": "sad", "1": "meh", "2": "glad"}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(json.dumps(config))
    import transformers

    ours = inferline.pipeline("text-classification", model=str(classifier_dir), config=str(tmp_path / "config"))
    # transformers 4.57.6 reads config= only to pick the model class and loads the checkpoint's own config,
    # against its documentation ("the configuration used to instantiate the model"): we follow the docs, and
    # compare with transformers given a model that it built from that config.
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(classifier_dir), config=transformers.AutoConfig.from_pretrained(str(tmp_path / "config")))
    theirs = transformers.pipeline("text-classification", model=model, tokenizer=str(classifier_dir), device="cpu")
    assert_same(ours(TEXTS, top_k=None), theirs(TEXTS, top_k=None))
    assert {r["label"] for r in ours(TEXTS[0], top_k=None)} == {"sad", "meh", "glad"}


def test_config_with_a_built_model_is_checked(classifier_dir):
    from inferline.models.registry import load_model

    model = load_model(classifier_dir, "sequence-classification")
    same = inferline.pipeline("text-classification", model=model, config=str(classifier_dir))  # the model's own
    assert same("hello")[0]["label"]
    other = dict(model.config.raw, id2label={"0": "a", "1": "b", "2": "c"})
    with pytest.raises(ValueError, match="already built"):
        inferline.pipeline("text-classification", model=model, config=other)


# ----- tokenizer= -----
def test_tokenizer_object_and_directory(checkpoint, classifier_dir):
    import transformers

    from inferline.processing.tokenizer import Tokenizer

    other = checkpoint("bert", "base")  # the same vocabulary, from another checkpoint's folder
    theirs, ours = both("text-classification", model=str(classifier_dir), tokenizer=str(other))
    assert_same(ours(TEXTS, top_k=None), theirs(TEXTS, top_k=None))
    reference = transformers.pipeline("text-classification", model=str(classifier_dir), device="cpu",
                                      tokenizer=transformers.AutoTokenizer.from_pretrained(str(other)))
    built = inferline.pipeline("text-classification", model=str(classifier_dir), tokenizer=Tokenizer.from_pretrained(other))
    assert_same(built(TEXTS, top_k=None), reference(TEXTS, top_k=None))


def test_tokenizer_id_resolves_through_the_hub_cache(offline_cache, checkpoint, classifier_dir):
    make_fake_cache(offline_cache, "org/tiny-tokenizer", checkpoint("bert", "base"))
    theirs, ours = both("text-classification", model=str(classifier_dir), tokenizer="org/tiny-tokenizer")
    assert_same(ours(TEXTS, top_k=None), theirs(TEXTS, top_k=None))


def test_tokenizer_tuple_keeps_its_options(classifier_dir):
    options = {"model_max_length": 12, "use_fast": True}
    theirs, ours = both("text-classification", model=str(classifier_dir), tokenizer=(str(classifier_dir), dict(options)))
    assert ours.tokenizer.model_max_length == 12 == theirs.tokenizer.model_max_length
    assert_same(ours(TEXTS, top_k=None, truncation=True), theirs(TEXTS, top_k=None, truncation=True))
    given = dict(options)
    inferline.pipeline("text-classification", model=str(classifier_dir), tokenizer=(str(classifier_dir), given))
    assert given == options  # transformers pops use_fast from the caller's dict; we leave it alone


def test_tokenizer_tuple_with_unknown_options_says_so(classifier_dir):
    with pytest.raises(ValueError, match="padding_sid"):
        inferline.pipeline("text-classification", model=str(classifier_dir),
                           tokenizer=(str(classifier_dir), {"padding_sid": "left"}))
    with pytest.raises(TypeError, match="tuple"):
        inferline.pipeline("text-classification", model=str(classifier_dir), tokenizer=(str(classifier_dir),))


# ----- revision= and token= -----
def test_revision_selects_the_snapshot(offline_cache, checkpoint):
    make_fake_cache(offline_cache, "org/tiny", checkpoint("bert", "sequence-classification"))
    make_fake_cache(offline_cache, "org/tiny", checkpoint("distilbert", "sequence-classification"), OTHER_COMMIT,
                    ref="v1")
    theirs, ours = both("text-classification", model="org/tiny", revision="v1")
    assert ours.model.config.raw["model_type"] == "distilbert"
    assert_same(ours(TEXTS, top_k=None), theirs(TEXTS, top_k=None))
    main = inferline.pipeline("text-classification", model="org/tiny", device="cpu")
    assert main.model.config.raw["model_type"] == "bert"
    through_kwargs = inferline.pipeline("text-classification", model="org/tiny", model_kwargs={"revision": "v1"})
    assert through_kwargs.model.config.raw["model_type"] == "distilbert"


def test_token_reaches_the_hub(offline_cache, checkpoint, monkeypatch):
    import huggingface_hub

    make_fake_cache(offline_cache, "org/private", checkpoint("bert", "sequence-classification"))
    seen = []
    real = huggingface_hub.snapshot_download

    def spy(*args, **kwargs):
        seen.append(kwargs.get("token"))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    theirs, ours = both("text-classification", model="org/private", token="hf_not_a_real_token")
    assert seen and set(seen) == {"hf_not_a_real_token"}
    assert_same(ours(TEXTS, top_k=None), theirs(TEXTS, top_k=None))


# ----- device_map= -----
@pytest.mark.parametrize("device_map", ["cpu", {"": "cpu"}, "auto"])
def test_device_map_on_one_device(classifier_dir, device_map):
    import transformers

    pytest.importorskip("accelerate")  # transformers needs it for device_map
    theirs = transformers.pipeline("text-classification", model=str(classifier_dir), device_map=device_map)
    ours = inferline.pipeline("text-classification", model=str(classifier_dir), device_map=device_map)
    assert ours.device.type == theirs.model.device.type == "cpu"  # no GPU on the test machine
    assert_same(ours(TEXTS, top_k=None), theirs(TEXTS, top_k=None))


def test_device_map_forms_and_conflicts(classifier_dir):
    path = str(classifier_dir)
    assert inferline.pipeline("text-classification", model=path, model_kwargs={"device_map": "cpu"}).device.type == "cpu"
    with pytest.raises(ValueError, match="one device"):
        inferline.pipeline("text-classification", model=path, device_map={"bert.embeddings": "cpu", "classifier": 0})
    with pytest.raises(ValueError, match="pass it once"):
        inferline.pipeline("text-classification", model=path, device_map="cpu", model_kwargs={"device_map": "cpu"})


# ----- pipeline_class= -----
def test_pipeline_class_is_used(classifier_dir):
    import transformers

    from inferline.pipelines.text_classification import TextClassificationPipeline

    class Labels(TextClassificationPipeline):
        def postprocess(self, model_outputs, **params):
            return {"best": super().postprocess(model_outputs, **params)}

    ours = inferline.pipeline("text-classification", model=str(classifier_dir), pipeline_class=Labels)
    inferred = inferline.pipeline(model=str(classifier_dir), pipeline_class=Labels)  # the task from the config
    theirs = transformers.pipeline("text-classification", model=str(classifier_dir), device="cpu")
    assert isinstance(ours, Labels) and isinstance(inferred, Labels) and inferred.task == "text-classification"
    assert_same(ours("I love it"), [{"best": theirs("I love it")[0]}])


# ----- model_kwargs= -----
def test_model_kwargs_dtype_and_ignored_loader_options(classifier_dir):
    import transformers

    kwargs = {"dtype": torch.bfloat16, "low_cpu_mem_usage": True}
    theirs = transformers.pipeline("text-classification", model=str(classifier_dir), model_kwargs=dict(kwargs))
    ours = inferline.pipeline("text-classification", model=str(classifier_dir), model_kwargs=dict(kwargs))
    assert ours.dtype == theirs.model.dtype == torch.bfloat16
    plain = inferline.pipeline("text-classification", model=str(classifier_dir),
                               model_kwargs={"low_cpu_mem_usage": True, "attn_implementation": "sdpa"})
    reference = transformers.pipeline("text-classification", model=str(classifier_dir), device="cpu")
    assert_same(plain(TEXTS, top_k=None), reference(TEXTS, top_k=None))
    with pytest.raises(ValueError, match="once"):
        inferline.pipeline("text-classification", model=str(classifier_dir), dtype="float32",
                           model_kwargs={"dtype": "bfloat16"})
