"""compare(task, models, data): each model evaluated in its own subprocess (so load time and peak RSS are
its own), with throughput at the batch size, latency p50/p95 at batch_size 1, load time and size."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from .report import table

SPEED_COLUMNS = (  # (report key, column title, lower is better, format)
    ("items_per_second", "items/s", False, "{:,.1f}"),
    ("latency_p50_ms", "p50 ms", True, "{:,.1f}"),
    ("latency_p95_ms", "p95 ms", True, "{:,.1f}"),
    ("load_seconds", "load s", True, "{:,.2f}"),
    ("peak_rss_mb", "peak RSS MB", True, "{:,.0f}"),
    ("parameters", "params", True, "{:,}"),
)


def compare(task: str, models: list[str], data: str, *, log=None, **options) -> list[dict]:
    """One report per model (or {"model", "error"} when its subprocess failed), in the order given."""
    reports = []
    for i, model in enumerate(models, 1):
        if log:
            log(f"[{i}/{len(models)}] {model}")
        spec = json.dumps({"task": task, "model": model, "data": data, **options})
        done = subprocess.run([sys.executable, "-m", "inferline.evaluation.compare", spec], capture_output=True,
                              text=True, env=_child_env())
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            reports.append({"model": model, "error": reason})
        else:
            reports.append(json.loads(lines[-1]))
    return reports


def _child_env() -> dict:
    """This process's environment, with the inferline being run first on the child's path."""
    here = str(Path(__file__).resolve().parents[2])
    path = [here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _worker(spec: dict) -> dict:
    from .evaluate import evaluate

    report = evaluate(latency_samples=spec.pop("latency_samples", 20), **spec)
    latency = report.pop("latency_ms", {})
    report["latency_p50_ms"], report["latency_p95_ms"] = latency.get("p50"), latency.get("p95")
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return report


def summary_rows(reports: list[dict], headline: tuple[str, ...], lower_is_better: frozenset):
    """(headers, rows) with the best value of each column marked '*'."""
    columns = [(name, name, name in lower_is_better, "{:.4f}") for name in headline] + list(SPEED_COLUMNS)
    ok = [r for r in reports if "error" not in r]

    def value(report, key):
        return report["metrics"].get(key) if key in report.get("metrics", {}) else report.get(key)

    best = {}
    for key, _, lower, _ in columns:
        values = [value(r, key) for r in ok if isinstance(value(r, key), (int, float))]
        if len(values) > 1:
            best[key] = min(values) if lower else max(values)
    rows = []
    for report in reports:
        if "error" in report:
            rows.append([display_name(report["model"], [r["model"] for r in reports]), f"failed: {report['error']}"] + [""] * (len(columns) - 1))
            continue
        row = [display_name(report["model"], [r["model"] for r in reports])]
        for key, _, _, form in columns:
            v = value(report, key)
            text = "-" if v is None else form.format(v) if isinstance(v, (int, float)) else str(v)
            row.append(text + ("*" if key in best and v == best[key] else ""))
        rows.append(row)
    return ["model"] + [title for _, title, _, _ in columns], rows


def display_name(model: str, models: list[str]) -> str:
    """A checkpoint's last path part, when that tells it apart from the others."""
    short = model.rstrip("/").rsplit("/", 1)[-1]
    others = [m.rstrip("/").rsplit("/", 1)[-1] for m in models if m != model]
    return model if short in others else short


def summary_text(task: str, data: str, reports: list[dict], headline, lower_is_better) -> str:
    headers, rows = summary_rows(reports, headline, lower_is_better)
    n = next((r["n"] for r in reports if "n" in r), 0)
    return f"{task} on {data} ({n} rows) · * = best\n\n" + table(headers, rows)


if __name__ == "__main__":  # one compared model, in its own process: the report is its stdout
    sys.stdout.write(json.dumps(_worker(json.loads(sys.argv[1]))) + "\n")
