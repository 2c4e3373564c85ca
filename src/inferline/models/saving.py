"""Write a loaded model back as a Hugging Face checkpoint: config.json + model.safetensors under the
checkpoint's own tensor names (recorded at load time), so transformers and inferline both reload it."""

from __future__ import annotations

import json
from pathlib import Path


def save_model(model, directory: Path, custom_task: str | None = None, pipeline_class: type | None = None) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = dict(getattr(getattr(model, "config", None), "raw", {}) or {})
    if custom_task and pipeline_class is not None:
        config.setdefault("custom_pipelines", {})[custom_task] = {
            "impl": f"{pipeline_class.__module__}.{pipeline_class.__qualname__}"}
    if config:
        (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    names = getattr(model, "checkpoint_names", None) or {}
    tensors, seen = {}, set()
    for ours, tensor in model.state_dict().items():
        if ours not in names:
            continue  # tied or derived: the checkpoint never had it
        if tensor.data_ptr() in seen and tensor.numel():
            continue
        seen.add(tensor.data_ptr())
        if ours in getattr(model, "checkpoint_transposed", ()):
            tensor = tensor.t()  # back to the checkpoint's layout (GPT-2 Conv1D)
        tensors[names[ours]] = tensor.detach().to("cpu").contiguous()
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
