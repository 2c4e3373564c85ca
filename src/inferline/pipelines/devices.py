"""`device=` in every form transformers accepts → a torch.device, with errors that say what is available."""

from __future__ import annotations

import torch


def resolve_device(device, model=None) -> torch.device:
    """None → the model's device if it is already placed off-CPU, else the first CUDA GPU, else CPU;
    -1 / negative → CPU; n → cuda:n; "cpu", "cuda", "cuda:1", "mps", torch.device → as given."""
    if device is None:
        current = _model_device(model)
        if current is not None and current.type != "cpu":
            return current
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if isinstance(device, bool) or not isinstance(device, (int, str, torch.device)):
        raise TypeError(f"`device` must be an int, a string such as 'cpu' or 'cuda:0', or a torch.device; "
                        f"got {type(device).__name__}.")
    if isinstance(device, int):
        device = torch.device("cpu") if device < 0 else torch.device("cuda", device)
    else:
        try:
            device = torch.device(device)
        except RuntimeError as error:
            raise ValueError(f"`device` {device!r} is not a device name (try 'cpu', 'cuda', 'cuda:1').") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`device` {str(device)!r} asks for CUDA, but this torch build sees no CUDA GPU. "
                             f"Use device='cpu' (or -1).")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"`device` {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) exist.")
        device = torch.device("cuda", index)
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("`device` 'mps' is not available on this machine.")
    return device


def _model_device(model) -> torch.device | None:
    if model is None or not hasattr(model, "parameters"):
        return None
    param = next(iter(model.parameters()), None)
    return None if param is None else param.device
