"""Which processors a checkpoint needs follows from its files and their keys, never from the task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREPROCESSOR_FILE = "preprocessor_config.json"


def read_preprocessor_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / PREPROCESSOR_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_processors(folder: str | Path) -> dict[str, Any]:
    """The processors `folder` calls for, keyed like pipeline()'s arguments (feature_extractor, ...)."""
    config = read_preprocessor_config(folder)
    found: dict[str, Any] = {}
    if "feature_extractor_type" in config:
        from .audio import feature_extractor_from_config

        found["feature_extractor"] = feature_extractor_from_config(config)
    return {key: value for key, value in found.items() if value is not None}
