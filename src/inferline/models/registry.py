"""model_type → family module; (family, head) → module; `load_model` builds and loads one.

Family modules are imported only when a checkpoint of theirs is loaded. Each exposes `FAMILY`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .kernels import prepare_convolutions
from .weights import WeightMap, load_weights, read_state_dict, resolve_dtype

# model_type → module that implements it (lazily imported)
MODEL_TYPES = {
    "bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert",
    "layoutlm": "layoutlm", "layoutlmv3": "layoutlmv3",
    "distilbert": "distilbert",
    "electra": "electra",
    "tapas": "tapas",
    "deberta-v2": "deberta_v2",
    "t5": "t5", "mt5": "t5",
    "bart": "bart", "mbart": "bart", "marian": "bart",
    "llama": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "llama", "phi3": "phi3",
    "gpt2": "gpt2",
    "vit": "vit", "deit": "vit", "dinov2": "dinov2", "convnext": "convnext", "resnet": "resnet", "swin": "swin",
    "clip": "clip", "siglip": "clip", "yolos": "yolos", "detr": "detr",
    "dpt": "dpt", "depth_anything": "depth_anything", "owlvit": "owlvit", "segformer": "segformer",
    "wav2vec2": "wav2vec2", "hubert": "wav2vec2",
    "whisper": "whisper",
    "vision-encoder-decoder": "vision_encoder_decoder", "blip": "blip",
    "vilt": "vilt",
}


@dataclass(frozen=True)
class Family:
    """What the registry needs from a model family."""

    name: str
    config_class: type
    heads: tuple[str, ...]
    build: Callable[[Any, str], nn.Module]  # (config, head) → module (called on the meta device)
    weight_map: Callable[[Any, str], WeightMap]  # (config, head) → its checkpoint renames
    base_prefix: Callable[[Any], str]  # config → name of the backbone inside head models
    input_names: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ("input_ids", "attention_mask", "token_type_ids")
    max_tokens: Callable[[Any], int | None] | None = None  # longest input the model takes; None = no limit


class UnsupportedModelError(ValueError):
    pass


def supported_model_types() -> list[str]:
    return sorted(MODEL_TYPES)


def family_for(model_type: str) -> Family:
    module = MODEL_TYPES.get(model_type)
    if module is None:
        raise UnsupportedModelError(
            f"Unsupported model_type {model_type!r}: inferline has no native implementation of it. "
            f"Supported model types: {', '.join(supported_model_types())}.")
    return importlib.import_module(f"{__package__}.{module}").FAMILY


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise OSError(f"{str(folder)!r} has no config.json, so it is not a Hugging Face checkpoint directory.")
    return json.loads(path.read_text())


def load_model(folder: Path, head: str, config: dict[str, Any] | None = None, dtype="auto",
               device: torch.device | str = "cpu", weights: Callable[[torch.dtype], dict] | None = None) -> nn.Module:
    """Build the (family, head) module for the checkpoint in `folder` and load its weights strictly.

    The returned module carries `.config` (the family dataclass), `.head`, `.input_names`, and
    `.checkpoint_dir`, which is all pipelines need to know about it. `weights` (target dtype → checkpoint
    name → tensor) replaces the folder's weight files: a foreign format's reader (models/formats).
    """
    from ..hub import find_weight_files

    raw = config if config is not None else read_config(folder)
    model_type = raw.get("model_type")
    if not model_type:
        raise ValueError(f"config.json in {str(folder)!r} has no model_type.")
    family = family_for(model_type)
    if head not in family.heads:
        raise UnsupportedModelError(
            f"model_type {model_type!r} has no {head!r} head in inferline; it offers: {', '.join(family.heads)}.")
    cfg = family.config_class.from_hf(raw)
    target_dtype = resolve_dtype(dtype, raw)
    state = weights(target_dtype) if weights is not None else read_state_dict(find_weight_files(Path(folder)))
    model = load_weights(lambda: family.build(cfg, head), state, family.weight_map(cfg, head), target_dtype,
                         device, family.base_prefix(cfg))
    model.config = cfg
    model.head = head
    model.input_names = family.input_names(cfg) if callable(family.input_names) else family.input_names
    model.checkpoint_dir = Path(folder)
    model.max_input_tokens = family.max_tokens(cfg) if family.max_tokens else cfg.max_position_embeddings
    prepare_convolutions(model)
    return model
