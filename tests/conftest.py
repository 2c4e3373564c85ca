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


def _torch_global_state() -> dict:
    """The torch functions model loaders patch while they load (transformers patches register_parameter and the
    init functions; two loads at once in one process can leave them patched)."""
    nn = torch.nn
    state = {f"nn.Module.{n}": getattr(nn.Module, n) for n in ("register_parameter", "register_buffer")}
    state.update({f"nn.init.{n}": getattr(nn.init, n) for n in ("normal_", "uniform_", "trunc_normal_",
                                                                  "kaiming_uniform_", "xavier_uniform_", "zeros_",
                                                                  "ones_", "constant_")})
    state.update({f"nn.{c.__name__}.reset_parameters": c.reset_parameters for c in (nn.Linear, nn.Embedding,
                                                                                      nn.LayerNorm)})
    state["nn.Embedding._fill_padding_idx_with_zero"] = nn.Embedding._fill_padding_idx_with_zero
    return state


@pytest.fixture(autouse=True)
def torch_left_as_found():
    """No test may load two models at once or leave torch's global functions patched: checked after each test."""
    before = _torch_global_state()
    yield
    changed = [name for name, value in _torch_global_state().items() if value is not before[name]]
    assert not changed, f"torch left patched after the test: {changed}"


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


# ----- the number of hypothesis examples the session tried (tests record it with record_property) -----
_HYPOTHESIS_EXAMPLES = []


def pytest_runtest_logreport(report):
    if report.when == "call":
        _HYPOTHESIS_EXAMPLES.extend(v for k, v in report.user_properties if k == "hypothesis_examples")


def pytest_terminal_summary(terminalreporter):
    if _HYPOTHESIS_EXAMPLES:
        terminalreporter.write_line(f"hypothesis: {sum(_HYPOTHESIS_EXAMPLES)} examples tried in "
                                    f"{len(_HYPOTHESIS_EXAMPLES)} property tests")
