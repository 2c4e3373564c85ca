"""Run a pipeline over a stream of rows: results in input order, and a bad row becomes an error, not a crash.

What `inferline run`, `inferline eval` and `inferline compare` share: checking `--param`s against the
task's pipeline before any model is loaded, building the pipeline, and `predict`, which feeds rows to
the pipeline a window at a time (the window the pipeline sorts by length), gives each result the shape
`pipe(value)` would, and, when a window fails, runs its rows one by one so only the bad ones carry an
error.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .records import Row, UsageError, open_sink, open_source, to_json

WINDOW_BATCHES = 8  # rows handed to the pipeline at once: batch_size × 8 (the pipeline's sort window)


def resolve_task(task: str):
    """(task name, pipeline class) for a task or alias; an unknown or unimplemented task is a UsageError."""
    from .tasks import PIPELINE_REGISTRY, UnknownTaskError

    try:
        name, spec, _ = PIPELINE_REGISTRY.check_task(task)
        return name, spec.resolve_class()
    except (UnknownTaskError, NotImplementedError, TypeError) as error:
        raise UsageError(str(error)) from None


def check_parameters(task: str, params: dict[str, Any]) -> None:
    """Fail on a parameter the task's pipeline does not accept, before any model work.

    The pipeline's own `_sanitize_parameters` is the judge: it runs on a bare instance (no model, no
    tokenizer). A TypeError/ValueError that names one of the given parameters is the user's mistake; any
    other failure means the check needs the loaded model, and construction repeats it then.
    """
    if not params:
        return
    _, cls = resolve_task(task)
    bare = cls.__new__(cls)
    bare.__dict__.update(task=task, model=None, tokenizer=None, feature_extractor=None, image_processor=None,
                         processor=None, device=None, batch_size=1, _warned=set(), _warn_lock=threading.Lock(),
                         _preprocess_params={}, _forward_params={}, _postprocess_params={})
    try:
        cls._sanitize_parameters(bare, **params)
    except (TypeError, ValueError) as error:
        if any(name in str(error) for name in params):
            raise UsageError(f"--param for {task}: {error}") from None
    except Exception:  # noqa: BLE001 - needs the real model; checked again when the pipeline is built
        pass


def build_pipeline(task: str, model: str, params: dict[str, Any] | None = None, device=None, dtype=None):
    """pipeline(task, model, **params); a bad model path, id or parameter becomes a UsageError."""
    from .factory import pipeline

    check_parameters(task, params or {})
    try:
        return pipeline(task, model=model, device=device, dtype=dtype or "auto", **(params or {}))
    except (OSError, ValueError, TypeError, KeyError, NotImplementedError) as error:
        raise UsageError(f"cannot build the {task} pipeline for {model!r}: {error}") from None


def predict(pipe, rows: Iterable[Row], batch_size: int = 1) -> Iterator[tuple[Row, Any, str | None]]:
    """(row, output, error) per row, in order; `output` is exactly what `pipe(row.value)` returns."""
    rows = iter(rows)
    shapes = _Shapes(pipe)
    window = batch_size * WINDOW_BATCHES
    while True:
        chunk = list(itertools.islice(rows, window))
        if not chunk:
            return
        results: dict[int, tuple[Any, str | None]] = {}
        batched = []
        for i, row in enumerate(chunk):
            if row.error is not None:
                results[i] = (None, row.error)
            elif shapes.rule(row.value) == "single":
                results[i] = _call(pipe, row.value)
            else:
                batched.append(i)
        try:
            outputs = list(pipe(iter([chunk[i].value for i in batched]), batch_size=batch_size)) if batched else []
            for i, output in zip(batched, outputs):
                results[i] = (shapes.reshape(chunk[i].value, output), None)
        except Exception:  # noqa: BLE001 - a bad row in the window: run the window's rows alone
            for i in batched:
                results[i] = _call(pipe, chunk[i].value)
        for i, row in enumerate(chunk):
            yield (row, *results[i])


def _call(pipe, value) -> tuple[Any, str | None]:
    try:
        return pipe(value), None
    except Exception as error:  # noqa: BLE001 - reported on the row's output line
        return None, f"{type(error).__name__}: {error}"


class _Shapes:
    """How `pipe(value)` shapes one result, learnt once per input type from a single call.

    Streaming an iterator through a pipeline yields each item's raw result, while a single call may wrap
    it (text-classification answers a lone string with a one-element list) or unwrap it. The rule is
    found by running the first value of each type both ways; a result neither equal, wrapped nor
    unwrapped keeps that type on single calls, which are exact by definition.
    """

    def __init__(self, pipe):
        self.pipe = pipe
        self.rules: dict[type, str] = {}

    def rule(self, value) -> str:
        kind = type(value)
        if kind not in self.rules:
            try:
                single = to_json(self.pipe(value))
                streamed = next(self.pipe(iter([value]), batch_size=1))
            except Exception:  # noqa: BLE001 - a bad row: this one runs alone, the next of its type probes again
                return "single"
            if to_json(streamed) == single:
                self.rules[kind] = "same"
            elif to_json([streamed]) == single:
                self.rules[kind] = "wrap"
            elif isinstance(streamed, list) and len(streamed) == 1 and to_json(streamed[0]) == single:
                self.rules[kind] = "unwrap"
            else:
                self.rules[kind] = "single"
        return self.rules[kind]

    def reshape(self, value, output):
        rule = self.rules[type(value)]
        return [output] if rule == "wrap" else output[0] if rule == "unwrap" else output


def progress_bar(total: int | None, enabled: bool, desc: str):
    """A tqdm bar on stderr (items/s and ETA when the total is known), or a no-op."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError as error:
        raise ImportError('The progress bar needs tqdm: pip install "inferline[cli]" (or pass --no-progress).') \
            from error
    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, mininterval=0.5)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class RunSummary:
    rows: int = 0  # results in the output, resumed ones included
    skipped: int = 0  # results already there (--resume)
    errors: int = 0
    first_errors: list[tuple[int, str]] = field(default_factory=list)  # (row number, message), the first few


def run_file(pipe, input_path: str, output_path: str, columns: list[str] | None = None, batch_size: int = 1,
             resume: bool = False, progress: bool = True) -> RunSummary:
    """Stream `input_path` through `pipe` into `output_path`, one line per input, in input order."""
    source = open_source(input_path, columns)
    sink = open_sink(output_path, resume)
    summary = RunSummary(rows=sink.done, skipped=sink.done, errors=sink.errors)
    total = None if source.total is None else max(source.total - sink.done, 0)
    bar = progress_bar(total, progress, pipe.task or "run")
    try:
        rows = itertools.islice(source.rows(), sink.done, None)
        for row, output, error in predict(pipe, rows, batch_size):
            summary.rows += 1
            if error is None:
                sink.write({**row.record, "output": output})
            else:
                summary.errors += 1
                if len(summary.first_errors) < 3:
                    summary.first_errors.append((summary.rows, error))
                sink.write({**row.record, "error": error})
            bar.update(1)
    finally:
        bar.close()
        sink.close()
    return summary
