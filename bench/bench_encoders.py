"""Encoder pipelines, inferline vs transformers 4.57.6, on the same checkpoint and inputs in one run.

    python bench/bench_encoders.py --quick          # smoke run, ~1 minute
    python bench/bench_encoders.py                  # full run, a few minutes
    python bench/bench_encoders.py --profile        # cProfile of inferline's bs-32 text-classification

A DistilBERT-base-sized checkpoint (random seeded weights, the real bert-base-uncased WordPiece vocab)
is built once with transformers and cached. Both libraries run on the CPU with the same torch thread
count. Ratios are oriented so that > 1 always means "inferline better": speed is inferline/transformers,
time and memory are transformers/inferline. Figures are printed and saved, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import CACHE, LIBS, ROOT, Rows, best_of, finish_machine, fixtures, machine, make_pipeline, \
    pipeline_function, save, save_checkpoint, sentences, table

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


# ----- checkpoint and workload -----
def build_checkpoint(arch: str, head: str) -> Path:
    """A base-sized seeded checkpoint (2 labels or 9 NER labels) with a real WordPiece tokenizer; cached."""
    folder = CACHE / f"{arch}-{head}-v1"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    wordpiece_tokenizer = fixtures().wordpiece_tokenizer
    if arch == "distilbert":
        tokenizer = wordpiece_tokenizer("DistilBertTokenizerFast")
        config = transformers.DistilBertConfig(vocab_size=len(tokenizer))  # dim 768, 6 layers, 12 heads, 3072
    else:
        tokenizer = wordpiece_tokenizer("BertTokenizerFast")
        config = transformers.BertConfig(vocab_size=len(tokenizer), num_hidden_layers=6)
    labels = NER_LABELS if head == "token-classification" else ["NEGATIVE", "POSITIVE"]
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    auto = {"sequence-classification": transformers.AutoModelForSequenceClassification,
            "token-classification": transformers.AutoModelForTokenClassification}[head]
    torch.manual_seed(0)
    return save_checkpoint(folder, auto.from_config(config), tokenizer)


def token_classification_pipelines(path: Path, notes: list[str]) -> dict | None:
    """Both NER pipelines, or None with a note while inferline's token-classification is missing or broken."""
    try:
        return {lib: make_pipeline(lib, "token-classification", path, aggregation_strategy="simple") for lib in LIBS}
    except Exception as error:  # noqa: BLE001  (a benchmark row is skipped, never the run)
        notes.append(f"token-classification row skipped: {type(error).__name__}: {error}")
        return None


# ----- fresh-subprocess measurements -----
def child(spec: dict) -> dict:
    """Runs inside a fresh interpreter: one import / construction / peak-memory measurement."""
    what, lib = spec["what"], spec["lib"]
    if what == "import":
        start = time.perf_counter()
        if lib == "inferline":
            import inferline  # noqa: F401  (lazy: torch loads on first use)
        else:  # "transformers" or "inferline.pipeline"
            pipeline_function(lib.split(".")[0])
        return {"seconds": time.perf_counter() - start}
    import torch

    torch.set_num_threads(spec["threads"])
    build = pipeline_function(lib)  # imports happen before the clock starts
    start = time.perf_counter()
    pipe = build(spec["task"], model=spec["path"], device="cpu")
    seconds = time.perf_counter() - start
    if what == "construct":
        return {"seconds": seconds}
    pipe(sentences(spec["n"]), batch_size=32)
    return {"peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM first: on Linux, ru_maxrss survives fork+exec, so a child would report
    its (big) parent's peak; VmHWM belongs to the new address space."""
    import resource

    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB (macOS would be bytes)


# Children may write bytecode: pip compiled transformers' modules at install time, while an editable inferline
# with PYTHONDONTWRITEBYTECODE set would be compiled from source in every child (~50 ms of the construction row).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def in_fresh_process(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          cwd=ROOT, env=CHILD_ENV)
    if done.returncode:
        raise RuntimeError(f"child {spec} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_fresh(spec: dict, key: str, runs: int) -> float:
    in_fresh_process(spec)  # warm-up: bytecode written, files in the page cache
    return statistics.median(in_fresh_process(spec)[key] for _ in range(runs))


# ----- in-process throughput -----
def throughput(pipes: dict, texts: list[str], batch_size: int, repeats: int, **call_kw) -> dict:
    """Best-of-`repeats` sentences/s per library (alternating order, one warm-up on a few texts each)."""
    calls = {lib: (lambda pipe=pipe: pipe(texts, batch_size=batch_size, **call_kw)) for lib, pipe in pipes.items()}
    result = best_of(calls, repeats, warmup=lambda lib: pipes[lib](texts[: max(2 * batch_size, 8)],
                                                                   batch_size=batch_size, **call_kw))
    return {"value": {lib: len(texts) / t for lib, t in result["best_s"].items()}, "times_s": result["times_s"],
            "outputs": result["outputs"]}


def agreement(outputs: dict) -> str:
    a, b = outputs["transformers"], outputs["inferline"]
    if a and isinstance(a[0], list):  # token classification: compare entity groups and words
        same = sum([(e["entity_group"], e["word"]) for e in x] == [(e["entity_group"], e["word"]) for e in y]
                   for x, y in zip(a, b))
    else:
        same = sum(x["label"] == y["label"] for x, y in zip(a, b))
    return f"{same}/{len(a)} identical predictions"


# ----- the run -----
def run(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    n = 64 if args.quick else args.sentences
    repeats = 1 if args.quick else args.repeats
    fresh = 1 if args.quick else 3
    texts = sentences(n)
    info = machine(args.threads)
    seq = build_checkpoint(args.arch, "sequence-classification")
    tok = build_checkpoint(args.arch, "token-classification")
    rows, notes = Rows(), []
    row = rows.add

    cls = {lib: make_pipeline(lib, "text-classification", seq) for lib in LIBS}
    for bs in (1, 32):
        result = throughput(cls, texts, bs, repeats)
        row(f"text-classification bs={bs}", "sentences/s", result["value"], "higher",
            {"times_s": result["times_s"], "agreement": agreement(result["outputs"])})
    del cls
    ner = token_classification_pipelines(tok, notes)
    if ner:
        result = throughput(ner, texts, 16, repeats)
        row("token-classification bs=16 (simple)", "sentences/s", result["value"], "higher",
            {"times_s": result["times_s"], "agreement": agreement(result["outputs"])})
        del ner

    imports = {"transformers": median_fresh({"what": "import", "lib": "transformers"}, "seconds", fresh),
               "inferline": median_fresh({"what": "import", "lib": "inferline"}, "seconds", fresh)}
    row("import (`from transformers import pipeline` vs `import inferline`)", "s", imports, "lower")
    imports["inferline"] = median_fresh({"what": "import", "lib": "inferline.pipeline"}, "seconds", fresh)
    row("import (`from transformers import pipeline` vs `from inferline import pipeline`)", "s", imports, "lower")
    spec = {"what": "construct", "task": "text-classification", "path": str(seq), "threads": args.threads}
    row("pipeline construction (after import)", "s",
        {lib: median_fresh({**spec, "lib": lib}, "seconds", fresh) for lib in LIBS}, "lower")
    spec = {**spec, "what": "rss", "n": n}
    row("peak RSS (import + build + bs-32 text-classification)", "MiB",
        {lib: in_fresh_process({**spec, "lib": lib})["peak_rss_mb"] for lib in LIBS}, "lower")
    return {"arch": args.arch, "sentences": n, "repeats": repeats, "fresh_process_runs": fresh,
            "machine": finish_machine(info), "rows": rows.rows, "notes": notes,
            "checkpoints": {"sequence-classification": str(seq), "token-classification": str(tok)}}


def title(report: dict) -> str:
    return (f"encoders: {report['arch']}-base (random weights), {report['sentences']} sentences of 5-120 words, "
            f"best of {report['repeats']} (throughput), median of {report['fresh_process_runs']} fresh processes")


def profile(args) -> None:
    """cProfile one inferline bs-32 text-classification pass (after a warm-up), top 25 by cumulative time."""
    import cProfile
    import pstats

    import torch

    torch.set_num_threads(args.threads)
    texts = sentences(64 if args.quick else args.sentences)
    pipe = make_pipeline("inferline", "text-classification", build_checkpoint(args.arch, "sequence-classification"))
    pipe(texts[:64], batch_size=32)
    profiler = cProfile.Profile()
    profiler.runcall(pipe, texts, batch_size=32)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=("distilbert", "bert"), default="distilbert",
                        help="distilbert-base sized (default) or a 6-layer bert-base sized checkpoint")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both libraries (default 2)")
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per throughput row (best is kept)")
    parser.add_argument("--quick", action="store_true", help="64 sentences, 1 repeat, 1 fresh process per row")
    parser.add_argument("--profile", action="store_true", help="profile inferline's bs-32 text-classification")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.profile:
        profile(args)
        return
    report = run(args)
    save(report, table(title(report), report), f"encoders-{report['arch']}", args.quick)


if __name__ == "__main__":
    main()
