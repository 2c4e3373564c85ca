"""inferline: the transformers pipeline() system, natively in PyTorch.

>>> from inferline import pipeline
>>> classifier = pipeline("sentiment-analysis", model="path/or/hub-id")

Heavy modules (torch, the models, the pipelines) load on first use, so `import inferline` is fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "pipeline": "inferline.factory",
    "Pipeline": "inferline.pipelines.base",
    "ChunkPipeline": "inferline.pipelines.base",
    "PIPELINE_REGISTRY": "inferline.tasks",
    "SUPPORTED_TASKS": "inferline.tasks",
    "TASK_ALIASES": "inferline.tasks",
    "get_supported_tasks": "inferline.tasks",
    "Tokenizer": "inferline.processing.tokenizer",
    "load_model": "inferline.models.registry",
    "Conversation": "inferline.pipelines.conversational",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'inferline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])
