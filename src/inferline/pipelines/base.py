"""Pipeline and ChunkPipeline: what every task shares.

A call runs: normalise inputs → preprocess → group by length and collate → _forward → uncollate →
postprocess. Subclasses write the four contract methods and nothing else:

- `_sanitize_parameters(**kw) -> (preprocess_kw, forward_kw, postprocess_kw)`
- `preprocess(item, **kw) -> dict` (a ChunkPipeline yields several dicts); a task may also offer
  `preprocess_batch(items, **kw)`, one result per item, to tokenise a window of items in one Rust call
- `_forward(batch, **kw) -> dict` of batched tensors
- `postprocess(output, **kw)` (a ChunkPipeline receives the list of one item's outputs)

Tensors that preprocess returns under a model input name are batched and sent to the model; every
other key travels beside them untouched and reaches postprocess with that item's outputs.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ..models.kernels import SMALL_FORWARD, one_thread
from .collate import collate, uncollate
from .devices import resolve_device

logger = logging.getLogger(__name__)

_SORT_WINDOW = 8  # with batch_size > 1, items are sorted by length within windows of 8 batches


class Pipeline:
    """Base class of every task pipeline."""

    per_token_outputs: tuple[str, ...] = ()  # output keys with a sequence axis, trimmed per item
    padding_side = "right"
    positional_parameters: tuple[str, ...] = ()  # call-time parameters a task also takes positionally
    sort_by_length = True  # with batch_size > 1, batch items of similar length (False: in input order)

    def __init__(self, model, tokenizer=None, feature_extractor=None, image_processor=None, processor=None,
                 task: str = "", device=None, dtype=None, torch_dtype=None, batch_size: int | None = None,
                 num_workers: int | None = None, binary_output: bool = False, **kwargs):
        self.model = model
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.image_processor = image_processor
        self.processor = processor
        self.task = task
        self.binary_output = binary_output
        self.device = resolve_device(device, model)
        if (dtype or torch_dtype) not in (None, "auto") and hasattr(model, "to"):
            from ..models.weights import resolve_dtype

            self.model = self.model.to(resolve_dtype(dtype or torch_dtype, {}))
        if hasattr(self.model, "to") and _module_device(self.model) != self.device:
            self.model = self.model.to(self.device)
        self.batch_size = _check_batch_size(batch_size if batch_size is not None else 1)
        self._dense_parameters: tuple[Any, int] = (None, 0)  # (model, its parameters outside embedding tables)
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()
        self._preprocess_params, self._forward_params, self._postprocess_params = self._sanitize_parameters(**kwargs)

    # ----- the contract -----
    def _sanitize_parameters(self, **kwargs) -> tuple[dict, dict, dict]:
        raise NotImplementedError

    def preprocess(self, inputs, **params) -> dict[str, Any]:
        raise NotImplementedError

    def _forward(self, model_inputs: dict[str, torch.Tensor], **params) -> dict[str, Any]:
        raise NotImplementedError

    def postprocess(self, model_outputs, **params):
        raise NotImplementedError

    # ----- calling -----
    def __call__(self, inputs=None, *args, batch_size: int | None = None, num_workers: int | None = None,
                 **kwargs):
        kwargs = self._positional_to_keywords(args, kwargs)
        pre, fwd, post = self._sanitize_parameters(**kwargs)
        params = ({**self._preprocess_params, **pre}, {**self._forward_params, **fwd},
                  {**self._postprocess_params, **post})
        size = _check_batch_size(batch_size if batch_size is not None else self.batch_size)
        if inputs is None:
            raise ValueError(f"The {self.task or type(self).__name__} pipeline needs inputs; got None.")
        if isinstance(inputs, (list, tuple)) and not self._is_single_input(inputs):
            if len(inputs) == 0:
                raise ValueError("The pipeline was given an empty list; pass at least one input.")
            return list(self._run(inputs, size, params))
        if isinstance(inputs, Iterator) or _is_dataset(inputs):
            return self._run(inputs if isinstance(inputs, Iterator) else _iter_dataset(inputs), size, params)
        return self._run_one(inputs, size, params)

    def predict(self, X):
        """scikit-learn style alias of `__call__`."""
        return self(X)

    def transform(self, X):
        """scikit-learn style alias of `__call__`."""
        return self(X)

    def _is_single_input(self, inputs) -> bool:
        """Whether a list/tuple is one input rather than a batch (e.g. a text pair); tasks override."""
        return False

    def _positional_to_keywords(self, args: tuple, kwargs: dict) -> dict:
        """Positional arguments after the inputs → the task's `positional_parameters`; any more is a TypeError."""
        if len(args) > len(self.positional_parameters):
            extra = args[len(self.positional_parameters):]
            accepted = (f"only {', '.join(self.positional_parameters)} may follow the inputs"
                        if self.positional_parameters else "it takes its inputs only; pass parameters by name")
            raise ExtraArgumentsError(f"The {self.task or type(self).__name__} pipeline got {len(extra)} unexpected "
                                      f"positional argument(s) {_short_args(extra)}: {accepted}.")
        for name, value in zip(self.positional_parameters, args):
            if name in kwargs:
                raise ExtraArgumentsError(f"`{name}` was given both positionally and by name; pass it once.")
            kwargs[name] = value
        return kwargs

    def preprocess_batch(self, items: list, **params) -> list:
        """Preprocess several items at once, one result per item (a ChunkPipeline: an iterable of pieces per
        item). Tasks override it to tokenise all the items in one Rust call; by default, item by item."""
        return [self.preprocess(item, **params) for item in items]

    # ----- the engine -----
    def _pieces(self, result) -> Iterable[dict]:
        return (result,)

    def _finish(self, outputs: list[dict], params):
        return self.postprocess(outputs[0], **params)

    def _run(self, items: Iterable, batch_size: int, params) -> Iterator:
        """Lazily yield one result per item, in input order (an item with no pieces gets its result too)."""
        pre, fwd, post = params
        window = _window(batch_size)
        started = [-1]  # the last item whose pieces have begun

        def pieces() -> Iterator[tuple[int, dict]]:
            stream, index = iter(items), 0
            while chunk := list(itertools.islice(stream, window)):
                for result in self.preprocess_batch(chunk, **pre):
                    started[0] = index
                    for piece in self._pieces(result):
                        yield index, piece
                    index += 1

        stream = pieces()
        pending: dict[int, list] = {}
        next_index = 0
        while chunk := list(itertools.islice(stream, window)):
            for (index, _), output in zip(chunk, self._forward_window([p for _, p in chunk], batch_size, fwd)):
                pending.setdefault(index, []).append(output)
            while next_index < started[0]:  # complete: a later item has begun
                yield self._finish(pending.pop(next_index, []), post)
                next_index += 1
        while next_index <= started[0]:  # the stream has ended
            yield self._finish(pending.pop(next_index, []), post)
            next_index += 1

    def _run_one(self, item, batch_size: int, params):
        """One input's result: what `_run([item])` yields, without its streaming machinery, which a single
        request would otherwise pay for on every call. batch_size still groups a ChunkPipeline's pieces."""
        pre, fwd, post = params
        [result] = self.preprocess_batch([item], **pre)
        pieces = self._pieces(result)
        if isinstance(pieces, tuple) and len(pieces) == 1:
            return self._finish(self._forward_window(list(pieces), batch_size, fwd), post)
        stream, outputs = iter(pieces), []
        window = _window(batch_size)
        while chunk := list(itertools.islice(stream, window)):
            outputs += self._forward_window(chunk, batch_size, fwd)
        return self._finish(outputs, post)

    def _forward_window(self, pieces: list[dict], batch_size: int, fwd: dict) -> list[dict]:
        names = self._model_input_names()
        model_inputs = [{k: v for k, v in p.items() if k in names and isinstance(v, torch.Tensor)} for p in pieces]
        order = sorted(range(len(pieces)), key=lambda i: -_sequence_length(model_inputs[i])) \
            if batch_size > 1 and self.sort_by_length else list(range(len(pieces)))
        results: list[dict | None] = [None] * len(pieces)
        for start in range(0, len(order), batch_size):
            rows = order[start: start + batch_size]
            pads = self._pad_values() if len(rows) > 1 else {}  # one row is never padded
            batch, lengths = collate([model_inputs[i] for i in rows], pads, self.padding_side)
            outputs = self.forward(batch, **fwd)
            for i, out in zip(rows, uncollate(outputs, lengths, self.per_token_outputs, self.padding_side)):
                meta = {k: v for k, v in pieces[i].items() if k not in model_inputs[i]}
                results[i] = {**meta, **out}
        return results

    def forward(self, model_inputs: dict[str, torch.Tensor], **forward_params) -> dict[str, Any]:
        """Run `_forward` on the pipeline's device under inference mode; outputs come back on the CPU."""
        on_cpu = self.device.type == "cpu"  # the inputs are made there: no moves either way
        threads = one_thread() if on_cpu and self._small_work(model_inputs) else contextlib.nullcontext()
        with torch.inference_mode(), threads:
            inputs = model_inputs if on_cpu else {k: v.to(self.device) for k, v in model_inputs.items()}
            outputs = self._forward(inputs, **forward_params)
        return outputs if on_cpu else {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in outputs.items()}

    def _small_work(self, model_inputs: Mapping[str, torch.Tensor]) -> bool:
        """Whether this batch's tokens x the model's dense parameters stay under SMALL_FORWARD multiply-adds on
        the CPU: then one thread runs it faster than the pool (a tiny model, a short request)."""
        ids = model_inputs.get("input_ids")
        if ids is None:
            return False
        model, count = self._dense_parameters
        if model is not self.model:
            count = _dense_parameter_count(self.model)
            self._dense_parameters = (self.model, count)
        return ids.numel() * count < SMALL_FORWARD

    def _model_input_names(self) -> tuple[str, ...]:
        return tuple(getattr(self.model, "input_names", ("input_ids", "attention_mask", "token_type_ids")))

    def _pad_values(self) -> dict[str, Any]:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(getattr(self.model, "config", None), "pad_token_id", None) or 0
        return {"input_ids": pad}

    # ----- helpers for subclasses -----
    def warn_once(self, key: str, message: str) -> None:
        with self._warn_lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logger.warning(message)

    @property
    def dtype(self) -> torch.dtype | None:
        param = next(iter(self.model.parameters()), None) if hasattr(self.model, "parameters") else None
        return None if param is None else param.dtype

    def save_pretrained(self, save_directory: str | Path, safe_serialization: bool = True) -> None:
        """Write the model (config.json + weights under the checkpoint's names) and its processors."""
        from ..models.saving import save_model

        save_directory = Path(save_directory)
        if save_directory.is_file():
            raise ValueError(f"`save_directory` {str(save_directory)!r} is a file; pass a directory.")
        from ..tasks import PIPELINE_REGISTRY

        custom = PIPELINE_REGISTRY.is_custom(self.task)
        save_model(self.model, save_directory, custom_task=self.task if custom else None, pipeline_class=type(self))
        for component in (self.tokenizer, self.feature_extractor, self.image_processor):
            if component is not None and hasattr(component, "save_pretrained"):
                component.save_pretrained(save_directory)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task={self.task!r}, model={type(self.model).__name__}, "
                f"dtype={self.dtype}, device={self.device})")


class ChunkPipeline(Pipeline):
    """A pipeline whose preprocess yields several pieces per input; postprocess gets them all."""

    def _pieces(self, result) -> Iterable[dict]:
        return result

    def _finish(self, outputs: list[dict], params):
        return self.postprocess(outputs, **params)


class ExtraArgumentsError(TypeError, ValueError):
    """Positional arguments a pipeline does not take (a TypeError; also a ValueError, as zero-shot's was)."""


def _short_args(args: tuple) -> str:
    text = ", ".join(repr(a) for a in args)
    return text if len(text) <= 80 else text[:77] + "..."


def _window(batch_size: int) -> int:
    """How many pieces the engine takes at a time: _SORT_WINDOW batches (sorted by length within), or one."""
    return batch_size * _SORT_WINDOW if batch_size > 1 else 1


def _check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    return batch_size


def _sequence_length(inputs: Mapping[str, torch.Tensor]) -> int:
    ids = inputs.get("input_ids")
    return int(ids.shape[-1]) if ids is not None else 0


def _is_dataset(inputs) -> bool:
    if isinstance(inputs, (str, bytes, dict, list, tuple)) or isinstance(inputs, torch.Tensor):
        return False
    return hasattr(inputs, "__len__") and hasattr(inputs, "__getitem__") and not hasattr(inputs, "shape")


def _iter_dataset(dataset) -> Iterator:
    for i in range(len(dataset)):
        yield dataset[i]


def _dense_parameter_count(model) -> int:
    """Parameters a token's forward multiplies by (embedding tables are only looked up); a model without
    parameters (a stand-in engine) counts as large."""
    if not hasattr(model, "modules"):
        return SMALL_FORWARD
    return sum(p.numel() for m in model.modules() if not isinstance(m, torch.nn.Embedding)
               for p in m.parameters(recurse=False)) or SMALL_FORWARD


def _module_device(model) -> torch.device | None:
    param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return None if param is None else param.device
