"""Command line: `python -m inferline demo` (more commands arrive with the CLI issue)."""

from __future__ import annotations

import argparse
import sys

from . import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferline", description="transformers pipelines, natively in PyTorch")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="embed a few sentences offline and print their similarities")
    demo.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    demo.add_argument("sentences", nargs="*")
    serve.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.model, args.sentences)
    if hasattr(args, "run"):
        return args.run(args)
    return 1


if __name__ == "__main__":
    sys.exit(main())
