"""table-question-answering, inferline vs transformers 4.57.6, on the same TAPAS-base-shaped checkpoint in one run.

    python bench/bench_table_qa.py --quick     # smoke run: 8 tables, 1 repeat
    python bench/bench_table_qa.py             # full run: 24 tables × 2 queries, best of 3

The checkpoint has TAPAS-base's shape (hidden 768, 12 layers, 12 heads, FFN 3072, WTQ's aggregation head and
temperature), seeded random weights and TapasTokenizer over the real bert-base-uncased vocabulary; built once
and cached. The workload: seeded tables of 4-24 rows × 3-6 columns of names, numbers and dates, two queries
each. transformers cannot batch TAPAS, so it answers table by table (each table's queries in one model call,
as its pipeline does); inferline runs at batch_size 1 and 8. Its tokenizer crashes on pandas 3, so it runs with
tests/parity/tapas_oracle.py's fix and object-typed DataFrames. Figures: queries/s, best of the repeats, with
the median and the range; ratios > 1 mean inferline is faster.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from _common import CACHE, Rows, best_of, finish_machine, fixtures, machine, make_pipeline, save, save_checkpoint, \
    table

WORDS = ("north", "river", "station", "garden", "tower", "harbour", "valley", "bridge", "castle", "market")
MONTHS = ("January", "March", "June", "August", "October", "December")


def build_checkpoint() -> Path:
    folder = CACHE / "tapas-base-wtq-v1"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    tokenizer = transformers.TapasTokenizer(vocab_file=str(fixtures().bert_vocab_dir() / "vocab.txt"),
                                            model_max_length=512)
    config = transformers.TapasConfig(  # tapas-base shape; google/tapas-base-finetuned-wtq's head settings
        vocab_size=len(tokenizer), num_aggregation_labels=4, no_aggregation_label_index=0,
        aggregation_labels={0: "NONE", 1: "SUM", 2: "AVERAGE", 3: "COUNT"}, use_answer_as_supervision=True,
        temperature=0.0352513, cell_selection_preference=0.207951, init_cell_selection_weights_to_zero=False)
    torch.manual_seed(0)
    return save_checkpoint(folder, transformers.TapasForQuestionAnswering(config), tokenizer)


def workload(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        rows, columns = rng.randint(4, 24), rng.randint(3, 6)
        table = {"Name": [" ".join(rng.sample(WORDS, 2)) for _ in range(rows)]}
        for c in range(columns - 1):
            kind = c % 3
            name = ("Points", "Opened", "Share")[kind] + (f" {c}" if c >= 3 else "")
            table[name] = [str(rng.randint(0, 5000)) if kind == 0 else
                           f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1900, 2015)}" if kind == 1 else
                           f"{rng.random() * 100:.1f}" for _ in range(rows)]
        queries = [f"how many points has the {table['Name'][0]}?",
                   f"which opened after {rng.randint(1920, 2000)} with more than {rng.randint(10, 90)} share?"]
        items.append({"table": table, "query": queries})
    return items


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tables", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    fixtures()
    from parity.compare import assert_same
    from parity.tapas_oracle import run_on_pandas3

    run_on_pandas3()
    info = machine(args.threads)
    path = build_checkpoint()
    items = workload(args.tables or (8 if args.quick else 24))
    repeats = args.repeats or (1 if args.quick else 3)
    queries = sum(len(item["query"]) for item in items)
    theirs = make_pipeline("transformers", "table-question-answering", path)
    ours = make_pipeline("inferline", "table-question-answering", path)
    framed = [{"table": pd.DataFrame(item["table"], dtype=object), "query": item["query"]} for item in items]
    rows, notes = Rows(), [f"pandas {pd.__version__}; {len(items)} tables, {queries} queries"]
    expected = None
    for batch_size in (1, 8):
        timing = best_of({"transformers": lambda: [theirs(item) for item in framed],
                          "inferline": lambda: ours(items, batch_size=batch_size)}, repeats)
        outputs = timing["outputs"]
        expected = outputs["transformers"]
        try:
            assert_same(outputs["inferline"], expected)
            agreement = "answers identical"
        except AssertionError as error:
            agreement = f"answers DIFFER: {error}"
        spread = {lib: f"median {queries / statistics.median(t):.3g}, range {queries / max(t):.3g}-"
                       f"{queries / min(t):.3g}" for lib, t in timing["times_s"].items()}
        rows.add(f"TAPAS-base WTQ, inferline batch_size {batch_size} (transformers unbatched)", "queries/s",
                 {lib: queries / s for lib, s in timing["best_s"].items()}, "higher",
                 {"agreement": f"{agreement}; transformers {spread['transformers']}; inferline {spread['inferline']}"})
    report = {"machine": finish_machine(info), "rows": rows.rows, "notes": notes}
    save(report, table("table-question-answering (bench_table_qa.py)", report), "table_qa", args.quick)


if __name__ == "__main__":
    main()
