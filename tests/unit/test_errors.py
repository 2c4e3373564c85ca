"""Bad input gets a clear ValueError/TypeError/OSError that names the problem."""

from __future__ import annotations

import pytest

import inferline


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return inferline.pipeline("text-classification", model=str(checkpoint("bert", "sequence-classification")),
                              device="cpu")


def test_unknown_task_lists_tasks_and_suggests():
    with pytest.raises(KeyError) as error:
        inferline.pipeline("sentiment-analyss")
    message = str(error.value)
    assert "Did you mean 'sentiment-analysis'" in message and "token-classification" in message
    assert isinstance(error.value, ValueError)


def test_unsupported_model_type_lists_supported(tmp_path, checkpoint):
    import json
    import shutil

    source = checkpoint("bert", "sequence-classification")
    shutil.copytree(source, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["model_type"] = "mamba-9000"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"mamba-9000.*Supported model types: .*bert"):
        inferline.pipeline("text-classification", model=str(tmp_path / "m"))


def test_missing_tensor_names_it(tmp_path, checkpoint):
    import shutil

    from safetensors.torch import load_file, save_file

    source = checkpoint("bert", "sequence-classification")
    shutil.copytree(source, tmp_path / "m")
    state = load_file(str(source / "model.safetensors"))
    del state["bert.encoder.layer.1.attention.self.query.weight"]
    save_file(state, str(tmp_path / "m" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(OSError, match="encoder.layer.1.attention.self.query.weight"):
        inferline.pipeline("text-classification", model=str(tmp_path / "m"))


@pytest.mark.parametrize("bad, error, pattern", [
    ("", ValueError, "empty"),
    ("   ", ValueError, "empty"),
    ([], ValueError, "empty list"),
    (None, ValueError, "needs inputs"),
    (42, TypeError, "must be a string"),
    ([b"bytes"], TypeError, "must be a string"),
    ({"text_pair": "no text"}, ValueError, "'text'"),
])
def test_bad_inputs(classifier, bad, error, pattern):
    with pytest.raises(error, match=pattern):
        classifier(bad)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"top_k": 0}, "top_k"),
    ({"function_to_apply": "softplus"}, "function_to_apply"),
    ({"batch_size": 0}, "batch_size"),
    ({"not_a_parameter": 1}, "not_a_parameter"),
])
def test_bad_parameters(classifier, kwargs, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        classifier("hello", **kwargs)


def test_bad_device_and_framework(checkpoint):
    path = str(checkpoint("bert", "sequence-classification"))
    with pytest.raises(ValueError, match="device"):
        inferline.pipeline("text-classification", model=path, device="gpu-please")
    with pytest.raises(TypeError, match="device"):
        inferline.pipeline("text-classification", model=path, device=1.5)
    with pytest.raises(ValueError, match="framework"):
        inferline.pipeline("text-classification", model=path, framework="tf")
    with pytest.raises(ValueError, match="model_kwargs"):
        inferline.pipeline("text-classification", model=path, model_kwargs={"quantum": True})


def test_no_task_and_no_model():
    with pytest.raises(RuntimeError, match="task or a model"):
        inferline.pipeline()


def test_too_long_text_is_truncated_with_one_warning(classifier, caplog):
    long_text = "word " * 400  # the tiny model takes 128 positions
    with caplog.at_level("WARNING"):
        first = classifier(long_text)
        classifier(long_text)
    assert first[0]["label"] and sum("truncated" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ValueError, match=r"tokens long but the model takes at most 128"):
        classifier(long_text, truncation=False)
