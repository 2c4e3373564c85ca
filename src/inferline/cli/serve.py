"""`inferline serve TASK --model M`: the pipeline behind HTTP (routes, batching: inferline.serve)."""

from __future__ import annotations

import sys


HELP = ("serve a pipeline over HTTP with dynamic batching: POST / (Inference-API shape), /v1/embeddings, "
        "/v1/chat/completions, /v1/completions, GET /health, /info, /metrics")


def add_arguments(parser) -> None:
    parser.add_argument("task", help="a task name or alias, e.g. text-classification")
    parser.add_argument("--model", default=None, help="hub id or local directory (default: the task's)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--max-batch-size", type=int, default=32, help="rows per model call, at most")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch may wait to fill")
    parser.add_argument("--max-queue", type=int, default=1024, help="requests waiting before 429")
    parser.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body (413 above)")
    parser.add_argument("--workers", type=int, default=None,
                        help="model threads running batches side by side (default: 2 on a CPU, 1 on a GPU)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def main(args) -> int:
    from ..serve import serve

    def ready(host, port):
        print(f"inferline: serving {args.task} on http://{host}:{port}", file=sys.stderr, flush=True)

    serve(args.task, args.model, host=args.host, port=args.port, max_batch_size=args.max_batch_size,
          max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, max_body_mb=args.max_body_mb,
          workers=args.workers, device=args.device, dtype=args.dtype, log_level=args.log_level, ready=ready)
    return 0
