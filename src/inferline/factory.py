"""pipeline(): the one place that wires a task, checkpoint files, processors and a native model."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from . import hub
from .tasks import PIPELINE_REGISTRY, default_model_for, task_from_config

logger = logging.getLogger(__name__)

# tokenizer options that only matter to transformers' loader (inferline's tokenizers are all fast).
_IGNORED_TOKENIZER_KWARGS = ("use_fast", "trust_remote_code", "cache_dir", "force_download")
# model_kwargs keys that only matter to transformers' loader; accepted and ignored here.
_IGNORED_MODEL_KWARGS = {"low_cpu_mem_usage", "attn_implementation", "use_safetensors", "trust_remote_code",
                         "output_attentions", "output_hidden_states", "cache_dir", "force_download"}


def pipeline(task: str | None = None, model: Any = None, config: Any = None, tokenizer: Any = None,
             feature_extractor: Any = None, image_processor: Any = None, processor: Any = None,
             framework: str | None = None, revision: str | None = None, use_fast: bool = True,
             token: str | bool | None = None, device: Any = None, device_map: Any = None, dtype: Any = "auto",
             trust_remote_code: bool | None = None, model_kwargs: dict[str, Any] | None = None,
             pipeline_class: type | None = None, batch_size: int | None = None, **kwargs: Any):
    """Build a pipeline for `task` over `model`, with transformers' signature and defaults.

    >>> from inferline import pipeline
    >>> embed = pipeline("feature-extraction", model="sentence-transformers/all-MiniLM-L6-v2")
    >>> len(embed("Hello world", pooling="mean", normalize=True))
    384
    """
    from .models.registry import load_model, read_config
    from .pipelines.devices import resolve_device

    if framework not in (None, "pt"):
        raise ValueError(f"`framework` must be 'pt' (inferline is PyTorch only); got {framework!r}.")
    if task is None and model is None:
        raise RuntimeError("Impossible to instantiate a pipeline without either a task or a model being specified. "
                           "Pass a task name such as 'text-classification', a model id or directory, or both.")
    if model is None and (tokenizer is not None or feature_extractor is not None):
        raise RuntimeError("A tokenizer or feature_extractor was given without a model; pass `model=` too, since "
                           "a default model may not match the processor you chose.")
    model_kwargs = dict(model_kwargs or {})
    dtype = _merge_dtype(dtype, kwargs.pop("torch_dtype", None), model_kwargs)
    device = _merge_device(device, device_map, model_kwargs)
    local_files_only = bool(kwargs.pop("local_files_only", False) or model_kwargs.pop("local_files_only", False))
    revision = model_kwargs.pop("revision", revision)
    gguf_file = _merge_gguf_file(kwargs.pop("gguf_file", None), model_kwargs)
    for key in list(model_kwargs):
        if key in _IGNORED_MODEL_KWARGS:
            model_kwargs.pop(key)
    if model_kwargs:
        raise ValueError(f"Unsupported `model_kwargs` {sorted(model_kwargs)}; inferline understands dtype, "
                         f"torch_dtype, device_map, revision, local_files_only, gguf_file and ignores "
                         f"{sorted(_IGNORED_MODEL_KWARGS)}.")
    del use_fast, trust_remote_code  # inferline has only fast (Rust) tokenizers and no remote code

    options = None
    spec = None
    cls = pipeline_class
    if task is not None:
        task, spec, options = PIPELINE_REGISTRY.check_task(task)
        cls = cls or spec.resolve_class()  # an unimplemented task fails here, before any loading
        if model is None:
            model, default_revision = default_model_for(spec, options)
            revision = revision if revision is not None else default_revision
            logger.warning(
                "No model was supplied, defaulted to %s and revision %s (https://huggingface.co/%s).\n"
                "Using a pipeline without specifying a model name and revision in production is not recommended.",
                model, revision, model)

    target_device = resolve_device(device)
    folder: Path | None = None
    gguf = _open_gguf(model, gguf_file, revision, token, local_files_only)
    if gguf is not None:  # a llama.cpp file: config, weights and tokenizer all come from it
        folder, raw_config = gguf.path.parent, _load_config(config, revision, token, local_files_only) or gguf.config()
    elif isinstance(model, nn.Module):
        folder = getattr(model, "checkpoint_dir", None)
        raw_config = getattr(getattr(model, "config", None), "raw", None)
        if config is not None and _load_config(config, revision, token, local_files_only) != raw_config:
            raise ValueError("`config` differs from the configuration of the model given, which is already built; "
                             "inferline cannot apply a config to a built model. Pass `model` as an id or directory "
                             "together with `config=`, or build the model from that config yourself.")
    elif isinstance(model, (str, os.PathLike)):
        folder = hub.resolve(model, revision=revision, token=token, local_files_only=local_files_only)
        folder = _native_folder(folder)
        raw_config = _load_config(config, revision, token, local_files_only) or read_config(folder)
    else:
        raise TypeError(f"`model` must be a model id, a local directory or an inferline model; "
                        f"got {type(model).__name__}.")

    if task is None:
        task = "text-generation" if gguf is not None else task_from_config(raw_config or {}, folder)
        task, spec, options = PIPELINE_REGISTRY.check_task(task)
        cls = cls or spec.resolve_class()

    if not isinstance(model, nn.Module):
        model = _load_for_task(folder, spec.heads, raw_config, dtype, target_device, load_model,
                               gguf.state_dict if gguf is not None else None)

    tokenizer, tokenizer_kwargs = _split_tokenizer_argument(tokenizer)
    if isinstance(tokenizer, (str, os.PathLike)):
        hub_options = {"revision": revision, "token": token, "local_files_only": local_files_only}
        hub_options.update({k: tokenizer_kwargs.pop(k) for k in list(tokenizer_kwargs) if k in hub_options})
        for key in _IGNORED_TOKENIZER_KWARGS:
            tokenizer_kwargs.pop(key, None)
        tokenizer = _load_tokenizer(hub.resolve(tokenizer, **hub_options), **tokenizer_kwargs)
    elif tokenizer_kwargs:
        raise ValueError(f"`tokenizer` options {sorted(tokenizer_kwargs)} apply when loading a tokenizer; give "
                         f"them with a tokenizer id or directory, as (id, {{options}}), not with a built tokenizer.")
    elif tokenizer is None and gguf is not None:
        tokenizer = gguf.tokenizer()
    elif tokenizer is None and folder is not None and getattr(cls, "needs_tokenizer", True):
        tokenizer = _load_tokenizer(folder)

    if isinstance(image_processor, (str, os.PathLike)):
        from .processing.image import ImageProcessor

        image_processor = ImageProcessor.from_pretrained(hub.resolve(image_processor, revision=revision, token=token,
                                                                     local_files_only=local_files_only))
    if isinstance(feature_extractor, (str, os.PathLike)):
        feature_extractor = _load_processors(hub.resolve(feature_extractor, revision=revision, token=token,
                                                         local_files_only=local_files_only)).get("feature_extractor")
    if folder is not None:  # what the checkpoint's own files declare, unless given
        found = _load_processors(folder, (raw_config or {}).get("model_type"))
        image_processor = image_processor if image_processor is not None else found.get("image_processor")
        feature_extractor = feature_extractor if feature_extractor is not None else found.get("feature_extractor")

    if options is not None:
        kwargs.setdefault("src_lang", options[0])
        kwargs.setdefault("tgt_lang", options[1])
    return cls(model=model, tokenizer=tokenizer, feature_extractor=feature_extractor,
               image_processor=image_processor, processor=processor, task=task, device=target_device,
               batch_size=batch_size, **kwargs)


def _load_for_task(folder, heads, raw_config, dtype, device, load_model, weights=None):
    """Load the first head of the task's list that the checkpoint's family offers."""
    from .models.registry import UnsupportedModelError, family_for

    family = family_for(raw_config.get("model_type", ""))
    for head in heads:
        if head in family.heads:
            return load_model(folder, head, raw_config, dtype, device, weights)
    raise UnsupportedModelError(
        f"model_type {raw_config.get('model_type')!r} offers heads {', '.join(family.heads)}, but this task "
        f"needs one of: {', '.join(heads)}.")


def _merge_gguf_file(gguf_file, model_kwargs: dict):
    if "gguf_file" in model_kwargs:
        if gguf_file is not None:
            raise ValueError("`gguf_file` was given both as an argument and in model_kwargs; pass it once.")
        gguf_file = model_kwargs.pop("gguf_file")
    return gguf_file


def _open_gguf(model, gguf_file, revision, token, local_files_only):
    """The GGUF file `model` (a .gguf path) or `model` + `gguf_file` (a directory or hub id) names, else None."""
    if gguf_file is None and not (isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".gguf")):
        return None
    from .models.formats.gguf import GGUFFile

    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"`gguf_file` needs `model` to be a model id or a directory; got {type(model).__name__}.")
    if gguf_file is None:
        return GGUFFile(model)
    return GGUFFile(hub.resolve_file(model, str(gguf_file), revision=revision, token=token,
                                     local_files_only=local_files_only))


def _load_config(config, revision, token, local_files_only) -> dict | None:
    from .models.registry import read_config

    if config is None or isinstance(config, dict):
        return config
    if isinstance(config, (str, os.PathLike)):
        return read_config(hub.resolve(config, revision=revision, token=token, local_files_only=local_files_only))
    raw = getattr(config, "raw", None)
    if isinstance(raw, dict):
        return raw
    raise TypeError(f"`config` must be a model id, a directory, a dict or an inferline config; "
                    f"got {type(config).__name__}.")


def _split_tokenizer_argument(tokenizer) -> tuple[Any, dict]:
    """`tokenizer` as transformers takes it: a tokenizer, an id or directory, or an (id, {options}) tuple."""
    if not isinstance(tokenizer, tuple):
        return tokenizer, {}
    if len(tokenizer) != 2 or not isinstance(tokenizer[1], dict):
        raise TypeError(f"A `tokenizer` tuple must be (tokenizer id or directory, dict of options); got "
                        f"{tokenizer!r:.100}.")
    return tokenizer[0], dict(tokenizer[1])  # a copy: the caller's dict is left as it is


def _load_tokenizer(folder: Path, **options):
    from .processing.tokenizer import TOKENIZER_FILES, Tokenizer

    if not any((Path(folder) / name).is_file() for name in TOKENIZER_FILES):
        return None
    return Tokenizer.from_pretrained(folder, **options)


def _native_folder(folder: Path) -> Path:
    """A foreign checkpoint directory (CTranslate2 Whisper) → its Hugging Face form, converted once."""
    from .models.formats.ctranslate2 import hf_view, is_ctranslate2_dir

    return hf_view(folder) if is_ctranslate2_dir(folder) else folder


def _load_processors(folder: Path, model_type: str | None = None) -> dict:
    from .processing.loading import load_processors

    return load_processors(folder, model_type)


def _merge_dtype(dtype, torch_dtype, model_kwargs: dict):
    if torch_dtype is not None:
        if dtype not in (None, "auto"):
            raise ValueError("Both `dtype` and `torch_dtype` were given; pass only `dtype`.")
        warnings.warn("`torch_dtype` is deprecated; use `dtype`.", FutureWarning, stacklevel=3)
        dtype = torch_dtype
    for key in ("dtype", "torch_dtype"):
        if key in model_kwargs:
            value = model_kwargs.pop(key)
            if dtype not in (None, "auto"):
                raise ValueError(f"`dtype` was given both as an argument ({dtype!r}) and in model_kwargs[{key!r}] "
                                 f"({value!r}); pass it once.")
            dtype = value
    return dtype


def _merge_device(device, device_map, model_kwargs: dict):
    if "device_map" in model_kwargs:
        if device_map is not None:
            raise ValueError("`device_map` was given both as an argument and in model_kwargs; pass it once.")
        device_map = model_kwargs.pop("device_map")
    if device_map is None:
        return device
    if device is not None:
        logger.warning("Both `device` and `device_map` are specified. `device` will override `device_map`.")
        return device
    if isinstance(device_map, dict):
        targets = set(device_map.values())
        if len(targets) != 1:
            raise ValueError(f"`device_map` spreads the model over {sorted(map(str, targets))}; inferline places "
                             f"a model on one device. Pass device_map='auto', a device, or {{'': device}}.")
        device_map = targets.pop()
    if device_map in ("auto", "balanced", "balanced_low_0", "sequential"):
        return None  # the first accelerator, else CPU
    return device_map
