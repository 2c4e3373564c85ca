"""The CLI tests' oracle: transformers' pipeline, from the shared session cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def theirs(pipelines):
    """theirs(task, path, **kw) → transformers' pipeline for that checkpoint."""
    return lambda task, path, **kwargs: pipelines(task, path, **kwargs)[0]
