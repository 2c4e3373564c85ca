"""`inferline eval TASK --model M --data PATH`: score a model on labelled data, print a table, write a report."""

from __future__ import annotations

import json
import sys

from .common import add_model_arguments, device_arg, parse_params, positive_int

HELP = "evaluate a model on labelled data (accuracy/F1, seqeval, SQuAD, ROUGE/BLEU, WER)"


def add_data_arguments(parser) -> None:
    """The arguments eval and compare share."""
    parser.add_argument("task", help="a task name or alias, e.g. text-classification, ner, question-answering")
    parser.add_argument("--data", required=True, metavar="PATH", help="labelled rows: .jsonl, .csv, .tsv or .parquet")
    parser.add_argument("--input-column", metavar="NAME",
                        help="the input field (default per task: text; tokens; question,context; image; audio)")
    parser.add_argument("--label-column", metavar="NAME",
                        help="the reference field (default per task: label; tags; answers; text for speech)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="evaluate the first N rows only")
    parser.add_argument("--report", metavar="PATH.json", help="write the JSON report here")
    parser.add_argument("--plot", metavar="PATH.png", help="write a PNG chart here")


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--model", required=True, help="a hub id or a local checkpoint directory")
    add_model_arguments(parser, batch_size=8)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def main(args) -> int:
    from ..evaluation.evaluate import evaluate, evaluator_for
    from ..evaluation.report import eval_text
    from ..records import UsageError

    if args.plot:
        if not args.plot.lower().endswith(".png"):
            raise UsageError(f"--plot {args.plot!r}: the chart is a PNG; give a path ending in .png.")
        if evaluator_for(args.task)[1].kind != "classification":
            raise UsageError(f"--plot draws a confusion matrix, which {args.task} has not.")
    report = evaluate(args.task, args.model, args.data, args.input_column, args.label_column, args.batch_size,
                      args.limit, parse_params(args.param), device_arg(args.device), args.dtype,
                      progress=not args.no_progress)
    print(eval_text(report))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
    if args.plot:
        matrix = report["metrics"]["confusion_matrix"]
        from ..evaluation.charts import confusion_matrix_png

        confusion_matrix_png(args.plot, matrix["labels"], matrix["matrix"],
                             f"Confusion matrix: true vs predicted label\n{_short(args.model)} on {_short(args.data)}, "
                             f"{report['n']} rows")
    for error in report["first_errors"]:
        print(f"  row {error['row']}: {error['error']}", file=sys.stderr)
    if report["errors"]:
        print(f"inferline eval: {report['errors']} rows failed and were left out of the metrics", file=sys.stderr)
        return 1
    return 0


def _short(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]
