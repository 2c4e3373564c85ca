"""evaluate(task, model, data): run the task's pipeline over labelled rows and score the predictions.

    >>> report = evaluate("text-classification", "my-model", "test.csv")
    >>> report["metrics"]["accuracy"], report["items_per_second"]
    (0.91, 412.7)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

from ..records import Row, UsageError, open_source, parse_columns
from ..runner import build_pipeline, check_parameters, predict, progress_bar
from .tasks import EVAL_TASKS, Evaluator


def evaluator_for(task: str) -> tuple[str, Evaluator, str]:
    """(task name, its evaluator, its default input column); a task without metrics is a UsageError."""
    from ..tasks import PIPELINE_REGISTRY, UnknownTaskError

    try:
        _, spec, _ = PIPELINE_REGISTRY.check_task(task)
    except (UnknownTaskError, TypeError) as error:
        raise UsageError(str(error)) from None
    if spec.name not in EVAL_TASKS:
        raise UsageError(f"inferline has no metrics for {spec.name!r}; it evaluates: {', '.join(EVAL_TASKS)}.")
    evaluator, input_column = EVAL_TASKS[spec.name]
    return spec.name, evaluator, input_column or evaluator.input_column


def prepare(task: str, data: str, input_column: str | None, label_column: str | None,
            params: dict[str, Any] | None):
    """Check the task, the data file, its columns and the parameters, before any model work."""
    name, evaluator, default_input = evaluator_for(task)
    source = open_source(data, parse_columns(input_column or default_input))
    if source.kind not in (".jsonl", ".csv", ".tsv", ".parquet"):
        raise UsageError(f"--data {data!r}: eval reads .jsonl, .csv, .tsv or .parquet.")
    label = label_column or evaluator.label_column
    if source.fields is not None and label not in source.fields:
        raise UsageError(f"--label-column {label}: no such column in {data!r}; its columns are "
                         f"{', '.join(source.fields)}.")
    params = {**evaluator.call_params, **(params or {})}
    if name == "zero-shot-classification" and "candidate_labels" not in params:
        params["candidate_labels"] = _labels_in(source, label)  # the data's own label set, read once ahead
    check_parameters(task, params)
    return evaluator, source, label, params


def _labels_in(source, label: str) -> list[str]:
    labels = {str(raw[label]) for raw, error in source.raw() if error is None and isinstance(raw, dict)
              and label in raw}
    if not labels:
        raise UsageError(f"zero-shot-classification: no labels found in column {label!r}; pass "
                         f"--param candidate_labels='[\"a\", \"b\"]'.")
    return sorted(labels)


def _labelled(rows: Iterator[Row], label: str, limit: int | None) -> Iterator[Row]:
    for n, row in enumerate(rows):
        if limit is not None and n >= limit:
            return
        if row.error is None and label not in row.record:
            row = Row(row.record, error=f"no label column {label!r} in this row")
        yield row


def evaluate(task: str, model: str, data: str, input_column: str | None = None, label_column: str | None = None,
             batch_size: int = 1, limit: int | None = None, params: dict[str, Any] | None = None, device=None,
             dtype=None, progress: bool = False, latency_samples: int = 0) -> dict:
    """The report {"task", "model", "n", "items_per_second", "metrics", ...} of `model` on `data`."""
    evaluator, source, label, params = prepare(task, data, input_column, label_column, params)
    from .. import factory  # noqa: F401 - the library import (torch) is not the model's load time

    start = time.perf_counter()
    pipe = build_pipeline(task, model, params, device, dtype)
    load_seconds = time.perf_counter() - start

    references, predictions, errors, samples = [], [], [], []
    bar = progress_bar(source.total if limit is None else limit, progress, f"eval {task}")
    start = time.perf_counter()
    try:
        for n, (row, output, error) in enumerate(predict(pipe, _labelled(source.rows(), label, limit), batch_size)):
            bar.update(1)
            if error is None:
                try:
                    reference = evaluator.reference(row.record[label], pipe)
                    prediction = evaluator.predict(output, row.value)
                except Exception as problem:  # noqa: BLE001 - a label or result this task cannot read
                    error = f"{type(problem).__name__}: {problem}"
            if error is not None:
                errors.append({"row": n + 1, "error": error})
                continue
            references.append(reference)
            predictions.append(prediction)
            if len(samples) < latency_samples:
                samples.append(row.value)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if not predictions:
        raise UsageError(f"no row of {data!r} could be evaluated"
                         + (f"; the first error: {errors[0]['error']}" if errors else " (the file has no rows)."))
    report = {"task": task, "model": model, "data": data, "n": len(predictions),
              "items_per_second": len(predictions) / seconds if seconds > 0 else float("inf"),
              "batch_size": batch_size, "load_seconds": load_seconds,
              "metrics": evaluator.metrics(references, predictions),
              "errors": len(errors), "first_errors": errors[:5]}
    if samples:
        report["latency_ms"] = _latency(pipe, samples)
    report["parameters"] = sum(p.numel() for p in pipe.model.parameters()) if hasattr(pipe.model, "parameters") \
        else None
    return report


def _latency(pipe, samples: list) -> dict:
    """p50 / p95 milliseconds of single calls at batch_size 1 (after one warm-up call)."""
    pipe(samples[0])
    times = []
    for value in samples:
        start = time.perf_counter()
        pipe(value, batch_size=1)
        times.append(1000 * (time.perf_counter() - start))
    if len(times) == 1:
        return {"p50": times[0], "p95": times[0], "samples": 1}
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {"p50": statistics.median(times), "p95": cuts[94], "samples": len(times)}
