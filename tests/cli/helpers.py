"""Run the real `inferline` command in a subprocess, with this checkout's src/ first on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Several commands in one interpreter (each subprocess start costs 1-2 s): main(argv) per command, the
# exit status (SystemExit included) and what it wrote on stderr, as JSON on the last line of stdout.
_MANY = """
import contextlib, io, json, sys, traceback
from inferline.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as stop:
            rc = stop.code
        except BaseException:
            traceback.print_exc()
            rc = "traceback"
    results.append({"rc": rc, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def env() -> dict:
    path = [str(SRC)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def inferline(*args, stdin: str | None = None, cwd=None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m inferline ARGS` → the completed process (text stdout/stderr)."""
    return subprocess.run([sys.executable, "-m", "inferline", *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=env(), cwd=cwd, timeout=timeout)


def inferline_many(commands: list[list], cwd=None, timeout: float = 300) -> list[dict]:
    """Several commands through `inferline.cli.main` in one subprocess → [{"rc", "stderr"}] in order."""
    argv = json.dumps([[str(a) for a in command] for command in commands])
    done = subprocess.run([sys.executable, "-c", _MANY, argv], capture_output=True, text=True, env=env(), cwd=cwd,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_jsonl(path) -> list:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def write_jsonl(path, rows) -> Path:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return Path(path)
