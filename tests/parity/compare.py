"""assert_same(ours, theirs): identical structure, keys, strings and ints; floats within a tolerance."""

from __future__ import annotations

import numbers

import numpy as np
import torch

ATOL = 1e-4


def assert_same(ours, theirs, atol: float = ATOL, path: str = "result") -> None:
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    if isinstance(ours, torch.Tensor):
        ours = ours.detach().numpy()
    if isinstance(theirs, np.ndarray) and theirs.ndim > 0:
        ours = np.asarray(ours)
        assert ours.shape == theirs.shape, f"{path}: shape {ours.shape} != {theirs.shape}"
        np.testing.assert_allclose(ours, theirs, atol=atol, rtol=0, err_msg=path)
        return
    if isinstance(theirs, np.generic):
        theirs = theirs.item()
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: {type(ours).__name__} != dict"
        assert list(ours) == list(theirs) or set(ours) == set(theirs), f"{path}: keys {list(ours)} != {list(theirs)}"
        for key in theirs:
            assert_same(ours[key], theirs[key], atol, f"{path}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)), f"{path}: {type(ours).__name__} != {type(theirs).__name__}"
        assert len(ours) == len(theirs), f"{path}: length {len(ours)} != {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, atol, f"{path}[{i}]")
    elif isinstance(theirs, bool) or theirs is None or isinstance(theirs, str):
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"
    elif isinstance(theirs, numbers.Integral):
        assert ours == theirs and not isinstance(ours, float), f"{path}: {ours!r} != {theirs!r}"
    elif isinstance(theirs, numbers.Real):
        assert isinstance(ours, numbers.Real), f"{path}: {ours!r} is not a number"
        assert abs(ours - theirs) <= atol, f"{path}: {ours!r} != {theirs!r} (atol {atol})"
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


def assert_plain_json(value, path: str = "result") -> None:
    """Outputs must be plain Python types (json-serialisable), never numpy scalars."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), f"{path}: key {k!r} is not a str"
            assert_plain_json(v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple)):  # tuples: transformers' (start, end) timestamps
        for i, v in enumerate(value):
            assert_plain_json(v, f"{path}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{path}: {type(value).__name__} {value!r}"
