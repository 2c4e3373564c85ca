"""What every ratio benchmark shares: paths, the corpus-cut workload, the libraries' `pipeline`, alternating
best-of timing, ratio rows, the machine line, the markdown table and the JSON copy in bench/results/."""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # same (single) tokenizer thread in both libraries
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CACHE = Path(os.environ.get("INFERLINE_BENCH_CACHE", Path(tempfile.gettempdir()) / "inferline-bench"))
CORPUS = ROOT / "tests" / "fixtures" / "corpus.txt"
LIBS = ("transformers", "inferline")
sys.path.insert(0, str(ROOT / "src"))  # measure this checkout, whatever copy the environment has installed


def fixtures():
    """tests/fixtures/checkpoints.py (tokenizer builders trained on the fixture corpus)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from fixtures import checkpoints

    return checkpoints


def save_checkpoint(folder: Path, model, tokenizer, files: dict[str, str] | None = None) -> Path:
    """Write model + tokenizer (+ `files`: name → text, e.g. preprocessor_config.json) to `folder` atomically
    (a half-written cache entry is never read)."""
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for name, text in (files or {}).items():
        (tmp / name).write_text(text)
    tmp.rename(folder)
    return folder


def sentences(n: int, seed: int = 0, words: tuple[int, int] = (5, 120)) -> list[str]:
    """n texts of words[0]..words[1] words cut from the fixture corpus's sentences, in a seeded order."""
    pool = [s.strip() + "." for line in CORPUS.read_text().splitlines() for s in line.split(". ") if s.strip()]
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        target = rng.randint(*words)
        chosen: list[str] = []
        while len(chosen) < target:
            chosen += rng.choice(pool).rstrip(".").split() + ["."]
        texts.append(" ".join(chosen[:target]).replace(" .", "."))
    rng.shuffle(texts)
    return texts


def pipeline_function(lib: str):
    """The library's `pipeline` (this is what the import rows time)."""
    if lib == "transformers":
        import logging

        from transformers import pipeline

        logging.getLogger("transformers").setLevel(logging.ERROR)
        return pipeline
    from inferline import pipeline

    return pipeline


def make_pipeline(lib: str, task: str, path: Path, **kwargs):
    return pipeline_function(lib)(task, model=str(path), device="cpu", **kwargs)


# Each timed call starts this long after the one before: thread pools that spin after their work (ONNX Runtime's
# by default, OpenMP's for a while) go idle first instead of taking a core from the next library.
SETTLE_S = 0.1


def best_of(calls: dict[str, Callable[[], object]], repeats: int, warmup: Callable[[str], object] | None = None,
            settle_s: float = SETTLE_S) -> dict:
    """Time each library's call `repeats` times, alternating which goes first so machine load hits both
    alike, after one warm-up each (`warmup(lib)`, else the call itself). Keeps every time and the last output.
    Each timed call starts `settle_s` after the one before (SETTLE_S)."""
    for lib, call in calls.items():
        warmup(lib) if warmup else call()
    times: dict[str, list[float]] = {lib: [] for lib in calls}
    outputs = {}
    for r in range(repeats):
        for lib in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            time.sleep(settle_s)
            start = time.perf_counter()
            outputs[lib] = calls[lib]()
            times[lib].append(time.perf_counter() - start)
    return {"best_s": {lib: min(t) for lib, t in times.items()}, "times_s": times, "outputs": outputs}


class Rows:
    """Ratio rows, oriented so that > 1 always means "inferline better": speed is inferline/transformers,
    time and memory transformers/inferline. Each row is printed (stderr) as it is added."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, name: str, unit: str, values: dict, better: str, extra: dict | None = None) -> None:
        t, i = values["transformers"], values["inferline"]
        ratio = i / t if better == "higher" else t / i
        row = {"row": name, "unit": unit, "transformers": t, "inferline": i, "ratio": ratio}
        line = f"  {name}: transformers {t:.4g}, inferline {i:.4g}"
        if values.get("ort") is not None:  # a third engine (ONNX Runtime): its own ratio, same orientation
            o = values["ort"]
            row.update(ort=o, ratio_ort=i / o if better == "higher" else o / i)
            line += f", ORT {o:.4g}"
        self.rows.append({**row, **(extra or {})})
        note = f" [{extra['agreement']}]" if extra and "agreement" in extra else ""
        vs_ort = f", inferline/ORT {row['ratio_ort']:.2f}" if "ratio_ort" in row else ""
        print(f"{line} {unit} (inferline/transformers {ratio:.2f}{vs_ort}){note}", file=sys.stderr)


def machine(threads: int) -> dict:
    import tokenizers
    import torch
    import transformers

    import inferline

    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "threads": threads, "cpu": cpu, "cores": os.cpu_count(),
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "inferline_source": str(Path(inferline.__file__).parent)}


def start(threads: int = 2) -> tuple:
    """The usual command line (--quick, --threads), torch's threads set, and the machine line: (args, info)."""
    import argparse

    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=threads)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args, machine(args.threads)


def finish_machine(info: dict) -> dict:
    return {**info, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}


def table(title: str, report: dict) -> str:
    """Markdown: title, machine line, one line per row, then the agreement checks and notes."""
    m = report["machine"]
    lines = [f"## {title}", "",
             f"torch {m['torch']}, transformers {m['transformers']}, tokenizers {m['tokenizers']}, python "
             f"{m['python']}; {m['threads']} torch threads on {m['cpu']} ({m['cores']} cores, load "
             f"{m['load_avg_1m_at_start']} at start, {m['load_avg_1m_at_end']} at end)", "",
             "| row | transformers | inferline | ratio (>1 = inferline better) |", "|---|---|---|---|"]
    ort = any("ort" in r for r in report["rows"])
    if ort:  # a third engine: its figures and inferline's ratio against it
        lines[-2:] = ["| row | transformers | inferline | ONNX Runtime | inferline/transformers | inferline/ORT |",
                      "|---|---|---|---|---|---|"]

    def fmt(ratio):
        return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:.0f}x"

    for r in report["rows"]:
        cells = [f"{r['row']} ({r['unit']})", f"{r['transformers']:.4g}", f"{r['inferline']:.4g}"]
        if ort:
            cells.append(f"{r['ort']:.4g}" if "ort" in r else "—")
        cells.append(fmt(r["ratio"]))
        if ort:
            cells.append(fmt(r["ratio_ort"]) if "ratio_ort" in r else "—")
        lines.append("| " + " | ".join(cells) + " |")
    checks = [f"{r['row']}: {r['agreement']}" for r in report["rows"] if "agreement" in r]
    return "\n".join(lines + [""] + [f"- {c}" for c in checks + report.get("notes", [])])


def save(report: dict, text: str, name: str, quick: bool) -> Path:
    """Print the table and write it with the whole report (every repeat's timing) as JSON in bench/results/."""
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}-{'quick-' if quick else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({**report, "table": text}, indent=1))
    print(f"\nsaved {out.relative_to(ROOT)}")
    return out
