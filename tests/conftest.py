"""Shared fixtures: tiny checkpoints (built once per session, cached on disk) and the two pipelines."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a hub
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models: threads only add contention (pytest -n 2 uses both cores)

import torch  # noqa: E402

torch.set_num_threads(1)

from fixtures.checkpoints import build  # noqa: E402


@pytest.fixture(scope="session")
def checkpoint():
    """checkpoint(arch, head) → Path of a tiny HF-format checkpoint."""
    return build


@pytest.fixture(scope="session")
def pipelines():
    """pipelines(task, path, **kw) → (transformers pipeline, inferline pipeline), cached per session."""
    cache = {}

    def make(task, path, **kwargs):
        key = (task, str(path), repr(sorted(kwargs.items())))
        if key not in cache:
            import transformers

            import inferline

            logging.getLogger("transformers").setLevel(logging.ERROR)
            cache[key] = (transformers.pipeline(task, model=str(path), device="cpu", **kwargs),
                          inferline.pipeline(task, model=str(path), device="cpu", **kwargs))
        return cache[key]

    return make
