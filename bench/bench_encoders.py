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
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # same (single) tokenizer thread in both libraries
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CACHE = Path(os.environ.get("INFERLINE_BENCH_CACHE", Path(tempfile.gettempdir()) / "inferline-bench"))
CORPUS = ROOT / "tests" / "fixtures" / "corpus.txt"
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
LIBS = ("transformers", "inferline")


# ----- checkpoint and workload -----
def build_checkpoint(arch: str, head: str) -> Path:
    """A base-sized seeded checkpoint (2 labels or 9 NER labels) with a real WordPiece tokenizer; cached."""
    folder = CACHE / f"{arch}-{head}-v1"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.checkpoints import wordpiece_tokenizer

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
    model = auto.from_config(config)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def sentences(n: int, seed: int = 0) -> list[str]:
    """n texts of 5..120 words cut from the fixture corpus's sentences, in a seeded order."""
    pool = [s.strip() + "." for line in CORPUS.read_text().splitlines() for s in line.split(". ") if s.strip()]
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        target = rng.randint(5, 120)
        words: list[str] = []
        while len(words) < target:
            words += rng.choice(pool).rstrip(".").split() + ["."]
        texts.append(" ".join(words[:target]).replace(" .", "."))
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


def in_fresh_process(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"child {spec} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_fresh(spec: dict, key: str, runs: int) -> float:
    return statistics.median(in_fresh_process(spec)[key] for _ in range(runs))


# ----- in-process throughput -----
def throughput(pipes: dict, texts: list[str], batch_size: int, repeats: int, **call_kw) -> dict:
    """Best-of-`repeats` sentences/s per library; libraries alternate so machine load hits both alike."""
    for pipe in pipes.values():  # warm-up
        pipe(texts[: max(2 * batch_size, 8)], batch_size=batch_size, **call_kw)
    times: dict[str, list[float]] = {lib: [] for lib in pipes}
    outputs = {}
    for r in range(repeats):
        for lib in (list(pipes) if r % 2 == 0 else list(pipes)[::-1]):
            start = time.perf_counter()
            outputs[lib] = pipes[lib](texts, batch_size=batch_size, **call_kw)
            times[lib].append(time.perf_counter() - start)
    return {"value": {lib: len(texts) / min(t) for lib, t in times.items()}, "times_s": times, "outputs": outputs}


def agreement(outputs: dict) -> str:
    a, b = outputs["transformers"], outputs["inferline"]
    if a and isinstance(a[0], list):  # token classification: compare entity groups and words
        same = sum([(e["entity_group"], e["word"]) for e in x] == [(e["entity_group"], e["word"]) for e in y]
                   for x, y in zip(a, b))
    else:
        same = sum(x["label"] == y["label"] for x, y in zip(a, b))
    return f"{same}/{len(a)} identical predictions"


# ----- the run -----
def machine(threads: int) -> dict:
    import tokenizers
    import torch
    import transformers

    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "threads": threads, "cpu": cpu, "cores": os.cpu_count(),
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}


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
    rows, notes = [], []

    def row(name, unit, values, better, extra=None):
        t, i = values["transformers"], values["inferline"]
        ratio = i / t if better == "higher" else t / i
        rows.append({"row": name, "unit": unit, "transformers": t, "inferline": i, "ratio": ratio, **(extra or {})})
        print(f"  {name}: transformers {t:.4g}, inferline {i:.4g} {unit} (ratio {ratio:.2f})", file=sys.stderr)

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
            "machine": {**info, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}, "rows": rows, "notes": notes,
            "checkpoints": {"sequence-classification": str(seq), "token-classification": str(tok)}}


def table(report: dict) -> str:
    m = report["machine"]
    lines = [f"## encoders: {report['arch']}-base (random weights), {report['sentences']} sentences of 5-120 words, "
             f"best of {report['repeats']} (throughput), median of {report['fresh_process_runs']} fresh processes",
             "",
             f"torch {m['torch']}, transformers {m['transformers']}, tokenizers {m['tokenizers']}, python "
             f"{m['python']}; {m['threads']} torch threads on {m['cpu']} ({m['cores']} cores, load "
             f"{m['load_avg_1m_at_start']} at start, {m['load_avg_1m_at_end']} at end)", "",
             "| row | transformers | inferline | ratio (>1 = inferline better) |", "|---|---|---|---|"]
    for r in report["rows"]:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] < 100 else f"{r['ratio']:.0f}x"
        lines.append(f"| {r['row']} ({r['unit']}) | {r['transformers']:.4g} | {r['inferline']:.4g} | {ratio} |")
    checks = [f"{r['row']}: {r['agreement']}" for r in report["rows"] if "agreement" in r]
    return "\n".join(lines + [""] + [f"- {c}" for c in checks + report["notes"]])


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
    text = table(report)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"encoders-{report['arch']}-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({**report, "table": text}, indent=1))
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
