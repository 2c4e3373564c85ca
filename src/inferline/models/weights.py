"""Checkpoint files → a strictly loaded module, in the target dtype, on the target device.

The module is built on the `meta` device (no memory, no random init), safetensors are memory-mapped,
renamed by the family's `WeightMap`, checked (every tensor present, no surprises, shapes equal) and
assigned in place. Errors name the tensor, the expected and the found shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# Renames every old checkpoint may need, whatever its family (TF-era LayerNorm names).
COMMON_RENAMES = [(r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias")]
# Buffers transformers saves in some checkpoints and no family loads: index tables it rebuilds itself.
COMMON_UNUSED = [r"position_ids$", r"token_type_ids$"]


@dataclass
class WeightMap:
    """A family's differences from its checkpoints' names, as data.

    renames: (regex, replacement) applied in order to each checkpoint key.
    unused:  regexes of checkpoint keys the family knowingly ignores (e.g. a pooler under a token head).
    tied:    our key → our key it shares storage with when the checkpoint omits it (tied embeddings).
    transpose: regexes of our keys the checkpoint stores transposed (GPT-2's Conv1D keeps (in, out));
             they are loaded as (out, in) for nn.Linear and saved back transposed.
    keep_float32: regexes of our keys kept in float32 when loading in float16 (transformers'
             _keep_in_fp32_modules: T5's `wo`, so that float16 T5 does not overflow).
    """

    renames: list[tuple[str, str]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    tied: dict[str, str] = field(default_factory=dict)
    transpose: list[str] = field(default_factory=list)
    keep_float32: list[str] = field(default_factory=list)

    def under(self, prefix: str) -> "WeightMap":
        """The same map for a model nested under `prefix` (a composite's `encoder.`, `decoder.`): anchored
        patterns and tied names get the prefix; unanchored patterns match anywhere already."""
        def anchor(pattern: str) -> str:
            return "^" + re.escape(prefix) + pattern[1:] if pattern.startswith("^") else pattern

        renames = [(anchor(p), prefix + r if p.startswith("^") else r) for p, r in self.renames]
        return WeightMap(renames, [anchor(p) for p in self.unused],
                         {prefix + k: prefix + v for k, v in self.tied.items()},
                         [anchor(p) for p in self.transpose], [anchor(p) for p in self.keep_float32])

    @staticmethod
    def merge(*maps: "WeightMap") -> "WeightMap":
        """Several maps as one (a composite model's parts, each already `under` its prefix)."""
        return WeightMap([r for m in maps for r in m.renames], [u for m in maps for u in m.unused],
                         {k: v for m in maps for k, v in m.tied.items()}, [t for m in maps for t in m.transpose],
                         [f for m in maps for f in m.keep_float32])

    def rename(self, key: str) -> str:
        for pattern, replacement in self.renames:
            key = re.sub(pattern, replacement, key)
        return key


class WeightLoadingError(OSError):
    """A checkpoint that does not fit the model: names the tensors involved."""


def read_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    """Read safetensors (memory-mapped) or torch .bin files (weights_only) into one name → tensor dict."""
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(path)))
        else:
            try:
                state.update(torch.load(str(path), map_location="cpu", weights_only=True, mmap=True))
            except RuntimeError:  # old non-zipfile .bin files cannot be mmapped
                state.update(torch.load(str(path), map_location="cpu", weights_only=True))
    return state


def resolve_dtype(dtype, config: dict) -> torch.dtype:
    """Map "auto" | None | str | torch.dtype → torch.dtype; "auto" reads the checkpoint's own dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        name = config.get("torch_dtype") or config.get("dtype") or "float32"
        return getattr(torch, name) if isinstance(getattr(torch, str(name), None), torch.dtype) else torch.float32
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"`dtype` must be 'auto', a torch.dtype or its name (float32, float16, bfloat16); "
                         f"got {dtype!r}.")
    return value


def load_weights(build: Callable[[], nn.Module], state: dict[str, torch.Tensor], weight_map: WeightMap,
                 dtype: torch.dtype, device: torch.device | str = "cpu", base_prefix: str = "") -> nn.Module:
    """Build the module on meta and assign the renamed checkpoint tensors, strictly."""
    with torch.device("meta"), _SkipInit():
        model = build()
    expected = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    renamed, origin = _rename(state, weight_map)
    renamed, origin = _align_prefix(renamed, origin, expected, base_prefix)
    unused = [re.compile(p) for p in COMMON_UNUSED + weight_map.unused]

    missing = [k for k in expected if k not in renamed and k not in weight_map.tied]
    unexpected = [k for k in renamed if k not in expected and not any(p.search(k) for p in unused)]
    if missing:
        raise WeightLoadingError(
            f"The checkpoint lacks {len(missing)} tensor(s) this {type(model).__name__} needs: "
            f"{_preview(missing)}. Is it a checkpoint of this architecture and head?")
    if unexpected:
        raise WeightLoadingError(
            f"The checkpoint has {len(unexpected)} tensor(s) {type(model).__name__} does not know: "
            f"{_preview(unexpected)}.")
    loaded = {}
    transpose = [re.compile(p) for p in weight_map.transpose]
    transposed = {name for name in expected if name in renamed and any(p.search(name) for p in transpose)}
    for name, target in expected.items():
        if name not in renamed:
            continue
        tensor = renamed[name].t() if name in transposed else renamed[name]
        if tensor.shape != target.shape:
            raise WeightLoadingError(f"Tensor {name!r}: the model expects shape {tuple(target.shape)}, "
                                     f"the checkpoint has {tuple(tensor.shape)}.")
        if tensor.is_floating_point():
            keep = dtype == torch.float16 and any(re.search(p, name) for p in weight_map.keep_float32)
            tensor = tensor.to(torch.float32 if keep else dtype)
        loaded[name] = tensor.to(device)
        if name in transposed:
            loaded[name] = loaded[name].contiguous()
    model.load_state_dict(loaded, strict=False, assign=True)
    model.checkpoint_names = {k: origin[k] for k in loaded}  # ours → checkpoint's, for save_pretrained
    model.checkpoint_transposed = transposed  # ours stored transposed in the checkpoint, for save_pretrained
    for ours, source in weight_map.tied.items():
        if ours not in renamed:
            _set_parameter(model, ours, _get_parameter(model, source))
    return model.eval()


class _SkipInit(TorchFunctionMode):
    """Skip the random and constant fills of meta-device tensors while a module is built: every tensor is then
    replaced by the checkpoint's, and meta-device `normal_` would import torch's whole decomposition library
    (over a second) for nothing. A torch function mode is thread-local and patches nothing: torch.nn.init and
    modules built anywhere else stay as they are."""

    FILLS = frozenset({"normal_", "uniform_", "fill_", "zero_", "erfinv_", "constant_", "ones_", "zeros_",
                       "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
                       "orthogonal_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in self.FILLS:
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


def _rename(state: dict[str, torch.Tensor], weight_map: WeightMap) -> tuple[dict, dict]:
    out, origin = {}, {}
    for original, tensor in state.items():
        key = original
        for pattern, replacement in COMMON_RENAMES:
            key = re.sub(pattern, replacement, key)
        key = weight_map.rename(key)
        out[key], origin[key] = tensor, original
    return out, origin


def _align_prefix(state: dict, origin: dict, expected: dict, prefix: str) -> tuple[dict, dict]:
    """Fit a base checkpoint to a head model (add the backbone prefix) or a head checkpoint to a base
    model (strip it and drop the head's tensors), as transformers' from_pretrained does."""
    dotted = prefix + "."
    model_has = bool(prefix) and any(k.startswith(dotted) for k in expected)
    ckpt_has = bool(prefix) and any(k.startswith(dotted) for k in state)
    if model_has and not ckpt_has:
        new = {k: (dotted + k if (dotted + k) in expected else k) for k in state}
    elif ckpt_has and not model_has:
        new = {k: k[len(dotted):] for k in state if k.startswith(dotted)}
    else:
        return state, origin
    return {n: state[k] for k, n in new.items()}, {n: origin[k] for k, n in new.items()}


def _preview(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _get_parameter(model: nn.Module, name: str) -> torch.Tensor:
    module_name, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(module_name) if module_name else model, attr)


def _set_parameter(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    setattr(module, attr, value if isinstance(value, nn.Parameter) else nn.Parameter(value, requires_grad=False))
