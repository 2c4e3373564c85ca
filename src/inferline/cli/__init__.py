"""Command line: `inferline run | eval | compare | demo` (`python -m inferline ...`).

Each subcommand is one module with `HELP`, `add_arguments(parser)` and `main(args) -> int`; a new
command adds one line to COMMANDS. Modules import only the standard library at the top, so
`inferline --help` and usage errors answer before torch is imported.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "run": "inferline.cli.run",
    "eval": "inferline.cli.eval",
    "compare": "inferline.cli.compare",
    "demo": "inferline.cli.demo",
}


def main(argv: list[str] | None = None) -> int:
    from ..records import UsageError

    parser = argparse.ArgumentParser(prog="inferline", description="transformers pipelines, natively in PyTorch")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, module_name in COMMANDS.items():
        module = modules[name] = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(parser=sub)
    args = parser.parse_args(argv)
    try:
        return modules[args.command].main(args)
    except (UsageError, ImportError) as error:
        args.parser.print_usage(sys.stderr)
        print(f"inferline {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `inferline run ... --output - | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"inferline {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
