"""`inferline compare TASK --models A B [C ...] --data PATH`: the same evaluation for several models, side by side."""

from __future__ import annotations

import json
import sys

from .common import add_model_arguments, device_arg, parse_params, positive_int
from .eval import add_data_arguments

HELP = "compare models on one task: quality, throughput, latency p50/p95, load time, peak RSS, size"


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--models", required=True, nargs="+", metavar="M", help="two or more hub ids or directories")
    add_model_arguments(parser, batch_size=8)
    parser.add_argument("--latency-samples", type=positive_int, default=20, metavar="N",
                        help="single calls timed at batch_size 1 for p50/p95 (default 20)")


def main(args) -> int:
    from ..evaluation.compare import compare, summary_text
    from ..evaluation.evaluate import evaluator_for, prepare
    from ..records import UsageError

    if len(args.models) < 2:
        raise UsageError("--models: give at least two models to compare.")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot {args.plot!r}: the chart is a PNG; give a path ending in .png.")
    params = parse_params(args.param)
    _, evaluator, _ = evaluator_for(args.task)
    prepare(args.task, args.data, args.input_column, args.label_column, params)  # usage errors before any model
    reports = compare(args.task, args.models, args.data, log=lambda line: print(line, file=sys.stderr),
                      input_column=args.input_column, label_column=args.label_column, batch_size=args.batch_size,
                      limit=args.limit, params=params, device=device_arg(args.device), dtype=args.dtype,
                      latency_samples=args.latency_samples)
    print(summary_text(args.task, args.data, reports, evaluator.headline, evaluator.lower_is_better))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump({"task": args.task, "data": args.data, "models": reports}, f, indent=2, ensure_ascii=False)
    ok = [r for r in reports if "error" not in r]
    if args.plot and ok:
        from ..evaluation.charts import quality_speed_png
        from ..evaluation.compare import display_name

        metric = evaluator.headline[0]
        points = [(display_name(r["model"], args.models), r["items_per_second"], r["metrics"][metric])
                  for r in ok]
        quality_speed_png(args.plot, points, metric,
                          f"{args.task}: {metric} against throughput ({ok[0]['n']} rows, batch size {args.batch_size})")
    return 0 if len(ok) == len(reports) and not any(r["errors"] for r in ok) else 1
