"""Which processors a checkpoint has follows from its files: preprocessor_config.json → an image processor
(or, for audio checkpoints, a feature extractor). factory.py calls `load_processors` once per pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREPROCESSOR_FILE = "preprocessor_config.json"


def read_preprocessor_config(folder) -> dict | None:
    path = Path(folder) / PREPROCESSOR_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_processors(folder, model_type: str | None = None) -> dict[str, Any]:
    """The processors the checkpoint in `folder` declares, keyed like pipeline()'s arguments
    ({"image_processor": ...} or {"feature_extractor": ...}); {} when it declares none."""
    config = read_preprocessor_config(folder)
    if config is None:
        return {}
    from .image import ImageProcessor, is_image_config

    if is_image_config(config):
        return {"image_processor": ImageProcessor.from_dict(config, model_type)}
    if "feature_extractor_type" in config:
        from .audio import feature_extractor_from_config

        extractor = feature_extractor_from_config(config)
        return {"feature_extractor": extractor} if extractor is not None else {}
    return {}
