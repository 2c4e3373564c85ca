"""Arguments the commands share: model options, `--param KEY=VALUE`, and their parsing."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_model_arguments(parser: argparse.ArgumentParser, batch_size: int = 1) -> None:
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="N",
                        help=f"inputs per forward pass (default {batch_size})")
    parser.add_argument("--device", default=None, help='"cpu", "cuda", "cuda:1", an index (-1 = CPU)')
    parser.add_argument("--dtype", default=None, choices=["auto", "float32", "float16", "bfloat16"],
                        help="weights dtype (default: the checkpoint's)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline parameter; VALUE is parsed as JSON when it parses "
                             '(top_k=3, candidate_labels=["a","b"]), else kept as a string; repeatable')


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def parse_params(items: list[str]) -> dict[str, Any]:
    """["top_k=3", 'candidate_labels=["a","b"]', "prefix=hi"] → {"top_k": 3, "candidate_labels": [...], ...}."""
    from ..records import UsageError

    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE, e.g. top_k=3.")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def device_arg(device: str | None):
    """"-1"/"0" → int (as pipeline(device=...) takes them); anything else as given."""
    if device is not None and device.lstrip("-").isdigit():
        return int(device)
    return device
