"""`inferline run TASK --model M --input PATH --output PATH`: a pipeline over a file, one result line per input."""

from __future__ import annotations

import sys

from .common import add_model_arguments, device_arg, parse_params

HELP = "run a pipeline over a file of inputs (jsonl, csv, tsv, parquet, txt or stdin)"


def add_arguments(parser) -> None:
    parser.add_argument("task", help="a task name or alias, e.g. text-classification, ner")
    parser.add_argument("--model", required=True, help="a hub id or a local checkpoint directory")
    parser.add_argument("--input", required=True, metavar="PATH",
                        help=".jsonl, .csv, .tsv, .parquet, .txt, or - for JSON lines on stdin")
    parser.add_argument("--output", required=True, metavar="PATH", help=".jsonl, .csv, .tsv, .parquet, or - (stdout)")
    parser.add_argument("--column", metavar="NAME",
                        help="the field holding the input (default: the first CSV/Parquet column, or a JSON "
                             "object's only key, or the whole object); NAME,NAME makes a dict of several")
    add_model_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="skip inputs whose results are already in the output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def main(args) -> int:
    from ..records import open_source, parse_columns
    from ..runner import build_pipeline, check_parameters, run_file

    params = parse_params(args.param)
    columns = parse_columns(args.column)
    open_source(args.input, columns)  # a missing file or column fails before the model loads
    check_parameters(args.task, params)
    pipe = build_pipeline(args.task, args.model, params, device_arg(args.device), args.dtype)
    summary = run_file(pipe, args.input, args.output, columns, args.batch_size, args.resume,
                       progress=not args.no_progress)
    resumed = f" ({summary.skipped} already there)" if summary.skipped else ""
    if summary.errors:
        print(f"inferline run: {summary.rows} rows{resumed}, {summary.errors} failed, "
              f"{summary.rows - summary.errors} ok → {args.output}", file=sys.stderr)
        for row, message in summary.first_errors:
            print(f"  row {row}: {message}", file=sys.stderr)
        return 1
    print(f"inferline run: {summary.rows} rows{resumed} → {args.output}", file=sys.stderr)
    return 0
