"""`inferline run` over a file of short texts, against a plain loop over transformers' pipeline that writes the
same JSON lines; and inferline's peak RSS as the file grows.

    python bench/bench_cli.py            # 10,000 texts; peak RSS at 10k and 100k lines (a few minutes)
    python bench/bench_cli.py --quick    # 2,000 texts; peak RSS at 2k and 20k lines

Every run is a fresh process timed end to end (start-up, import, model load, reading, running, writing),
as a user meets it. The checkpoint is BERT-tiny sized (hidden 128, 2 layers, 2 heads; seeded random
weights, the real bert-base-uncased vocabulary), so per-item overhead, not matrix products, decides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import CACHE, ROOT, Rows, finish_machine, fixtures, machine, save, save_checkpoint, sentences

# The plain loops a transformers user writes: one call per line, or the pipeline over the list in batches.
# Both write {"input", "output"} lines where "output" is what pipe(text) returns for one text.
LOOP = """
import json, sys
from transformers import pipeline
source, target = sys.argv[1], sys.argv[2]
pipe = pipeline("text-classification", model=sys.argv[3], device="cpu")
with open(source, encoding="utf-8") as f, open(target, "w", encoding="utf-8") as out:
    for line in f:
        text = line.rstrip("\\n")
        out.write(json.dumps({"input": text, "output": pipe(text)}, ensure_ascii=False) + "\\n")
"""
BATCHED = """
import json, sys
from transformers import pipeline
source, target = sys.argv[1], sys.argv[2]
pipe = pipeline("text-classification", model=sys.argv[3], device="cpu")
texts = [line.rstrip("\\n") for line in open(source, encoding="utf-8")]
with open(target, "w", encoding="utf-8") as out:
    for text, result in zip(texts, pipe(texts, batch_size=int(sys.argv[4]))):
        out.write(json.dumps({"input": text, "output": [result]}, ensure_ascii=False) + "\\n")
"""


def build_checkpoint() -> Path:
    folder = CACHE / "bert-tiny-sequence-classification-v1"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    tokenizer = fixtures().wordpiece_tokenizer("BertTokenizerFast")
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=512, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                     label2id={"NEGATIVE": 0, "POSITIVE": 1})
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    CACHE.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(folder, model, tokenizer)


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}... failed with exit status {process.returncode}")
    return seconds, usage.ru_maxrss / 1024


def agreement(ours: Path, theirs: Path) -> str:
    same = total = 0
    with open(ours, encoding="utf-8") as a, open(theirs, encoding="utf-8") as b:
        for x, y in zip(a, b):
            x, y = json.loads(x), json.loads(y)
            total += 1
            same += x["input"] == y["input"] and x["output"][0]["label"] == y["output"][0]["label"] and abs(
                x["output"][0]["score"] - y["output"][0]["score"]) < 1e-4
    return f"{same}/{total} lines with the same input, label and score (1e-4)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--texts", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    n = args.texts or (2000 if args.quick else 10_000)
    model = build_checkpoint()
    work = CACHE / "cli"
    work.mkdir(parents=True, exist_ok=True)
    texts = sentences(n, words=(4, 16))
    small, large = work / f"texts-{n}.txt", work / f"texts-{10 * n}.txt"
    small.write_text("\n".join(texts) + "\n", encoding="utf-8")
    large.write_text("\n".join(texts * 10) + "\n", encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    info = machine(args.threads)
    rows = Rows()

    def run(source: Path, target: Path, batch_size: int):
        return timed([sys.executable, "-m", "inferline", "run", "text-classification", "--model", str(model),
                      "--input", str(source), "--output", str(target), "--batch-size", str(batch_size),
                      "--no-progress"], env)

    print(f"{n} texts of 4-16 words; {args.threads} threads", file=sys.stderr)
    loop, _ = timed([sys.executable, "-c", LOOP, str(small), str(work / "loop.jsonl"), str(model)], env)
    ours_1, _ = run(small, work / "ours-1.jsonl", 1)
    rows.add(f"{n} texts, one call per text (bs 1), whole process", "texts/s",
             {"transformers": n / loop, "inferline": n / ours_1}, "higher",
             {"agreement": agreement(work / "ours-1.jsonl", work / "loop.jsonl")})
    batched, _ = timed([sys.executable, "-c", BATCHED, str(small), str(work / "batched.jsonl"), str(model),
                        str(args.batch_size)], env)
    ours_b, rss_small = run(small, work / "ours-b.jsonl", args.batch_size)
    rows.add(f"{n} texts, batch_size {args.batch_size}, whole process", "texts/s",
             {"transformers": n / batched, "inferline": n / ours_b}, "higher",
             {"agreement": agreement(work / "ours-b.jsonl", work / "batched.jsonl")})
    rows.add(f"inferline run bs {args.batch_size} vs the plain one-call-per-text loop", "texts/s",
             {"transformers": n / loop, "inferline": n / ours_b}, "higher")
    _, rss_large = run(large, work / "ours-large.jsonl", args.batch_size)
    report = {"machine": finish_machine(info), "rows": rows.rows, "texts": n,
              "peak_rss_mib": {str(n): rss_small, str(10 * n): rss_large},
              "notes": [f"inferline run peak RSS: {rss_small:.0f} MiB at {n:,} lines, {rss_large:.0f} MiB at "
                        f"{10 * n:,} lines ({rss_large / rss_small:.2f}x for 10x the file)"]}
    from _common import table

    save(report, table("inferline run vs a loop over transformers' pipeline", report), "cli", args.quick)


if __name__ == "__main__":
    main()
