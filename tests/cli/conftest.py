"""The CLI tests' fixture: transformers' pipeline (the oracle), one at a time."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def theirs():
    """theirs(task, path, **kw) → transformers' pipeline, cached (one at a time: the previous is dropped)."""
    cache = {}

    def make(task, path, **kwargs):
        key = (task, str(path), tuple(sorted(kwargs.items())))
        if key not in cache:
            import logging

            import transformers

            logging.getLogger("transformers").setLevel(logging.ERROR)
            cache.clear()
            cache[key] = transformers.pipeline(task, model=str(path), device="cpu", **kwargs)
        return cache[key]

    return make
