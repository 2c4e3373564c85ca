"""Streaming readers and writers of records: JSON lines, CSV/TSV, Parquet, plain text, stdin/stdout.

`open_source(path, columns)` reads one record at a time (a 1 GB file never sits in memory) and says
which value of each record is the pipeline's input; `open_sink(path, resume)` writes one line per
result, flushed as it goes, so a killed run leaves only complete lines (and at most one torn last
line, which `resume` drops).

    >>> source = open_source("inputs.txt", None)
    >>> next(source.rows())
    Row(record={'input': 'I love it'}, value='I love it', error=None)
"""

from __future__ import annotations

import base64
import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INPUT_FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")
OUTPUT_FORMATS = (".jsonl", ".csv", ".tsv", ".parquet")


class UsageError(ValueError):
    """A problem with what the user asked for (a path, a column, an option), reported without a traceback."""


@dataclass
class Row:
    record: dict  # what the output line starts from
    value: Any = None  # the pipeline input
    error: str | None = None  # a row that could not be read or has no such column


def _format(path: str, allowed: tuple[str, ...], what: str) -> str:
    if path == "-":
        return "-"
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise UsageError(f"{what} {path!r}: unknown format {suffix or '(no extension)'!r}; use one of "
                         f"{', '.join(allowed)} or '-' (JSON lines on {'stdin' if what == 'input' else 'stdout'}).")
    return ".jsonl" if suffix == ".json" else suffix


def parse_columns(column: str | None) -> list[str] | None:
    """`--column a` → ["a"]; `--column question,context` → both (the input becomes a dict of them)."""
    if column is None:
        return None
    names = [c.strip() for c in column.split(",")]
    if not all(names):
        raise UsageError(f"--column {column!r}: give a column name, or names separated by commas.")
    return names


# ----- reading -----
class Source:
    """An input file: `rows()` yields a Row per input in file order; `total` when the format tells it."""

    def __init__(self, path: str, columns: list[str] | None):
        self.path = path
        self.columns = columns
        self.kind = _format(path, INPUT_FORMATS, "input")
        if path != "-" and not Path(path).is_file():
            raise UsageError(f"input {path!r}: no such file.")
        self.total: int | None = None
        self.fields: list[str] | None = None  # the header of a CSV/Parquet file
        if self.kind in (".txt", ".jsonl"):
            self.total = _count_lines(path)  # for the progress bar's ETA (a JSON lines file's blank lines count)
        elif self.kind == ".parquet":
            parquet = _pyarrow_parquet()
            metadata = parquet.ParquetFile(path).metadata
            self.total = metadata.num_rows
            self.fields = list(parquet.ParquetFile(path).schema_arrow.names)
        elif self.kind in (".csv", ".tsv"):
            with open(path, newline="", encoding="utf-8") as f:
                self.fields = next(csv.reader(f, delimiter=self._delimiter), None) or []
            if not self.fields:
                raise UsageError(f"input {path!r}: the file is empty (a CSV needs a header row).")
        if self.fields is not None and columns:
            missing = [c for c in columns if c not in self.fields]
            if missing:
                raise UsageError(f"--column {','.join(missing)}: no such column in {path!r}; its columns are "
                                 f"{', '.join(self.fields)}.")

    @property
    def _delimiter(self) -> str:
        return "\t" if self.kind == ".tsv" else ","

    def raw(self) -> Iterator[tuple[Any, str | None]]:
        """Each record as read (a str, a dict, any JSON value) and a read error or None."""
        if self.kind in ("-", ".jsonl"):
            stream = sys.stdin.buffer if self.kind == "-" else open(self.path, "rb")
            try:
                for line in stream:
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line), None
                    except ValueError as error:
                        yield line.decode("utf-8", "replace").rstrip("\r\n"), f"invalid JSON line: {error}"
            finally:
                if stream is not sys.stdin.buffer:
                    stream.close()
        elif self.kind == ".txt":
            with open(self.path, encoding="utf-8", newline="") as f:
                for line in f:
                    yield line.rstrip("\r\n"), None
        elif self.kind in (".csv", ".tsv"):
            with open(self.path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f, delimiter=self._delimiter):
                    yield row, None
        else:
            for batch in _pyarrow_parquet().ParquetFile(self.path).iter_batches(batch_size=1024):
                yield from ((row, None) for row in batch.to_pylist())

    def rows(self) -> Iterator[Row]:
        for raw, error in self.raw():
            if error is not None:
                yield Row({"input": raw}, error=error)
            else:
                yield self.select(raw)

    def select(self, raw) -> Row:
        """The output record and the pipeline input of one raw record."""
        if not isinstance(raw, dict):
            if self.columns:
                return Row({"input": raw}, error=f"--column {','.join(self.columns)} given, but this row is a "
                                                 f"{type(raw).__name__}, not an object")
            return Row({"input": raw}, raw)
        columns = self.columns
        if columns is None:
            if self.fields is not None:  # CSV / Parquet: the first column
                columns = self.fields[:1]
            elif len(raw) == 1:
                columns = list(raw)
            else:  # an object whose keys are the pipeline's inputs (question/context, text/text_pair, ...)
                return Row(raw, raw)
        missing = [c for c in columns if c not in raw]
        if missing:
            return Row(raw, error=f"no column {', '.join(map(repr, missing))} in this row; it has "
                                  f"{', '.join(map(repr, raw)) or 'no keys'}")
        value = raw[columns[0]] if len(columns) == 1 else {c: raw[c] for c in columns}
        return Row(raw, value)


def _count_lines(path: str) -> int:
    """Lines in a file, read in 1 MiB blocks (a 1 GB file takes about a second, and no memory)."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def open_source(path: str, columns: list[str] | None = None) -> Source:
    return Source(path, columns)


# ----- writing -----
def to_json(value) -> str:
    """One JSON line: plain types as they are; tensors/arrays as lists; images as PNG data URIs."""
    return json.dumps(value, ensure_ascii=False, default=_jsonable)


def _jsonable(value):
    if hasattr(value, "tolist"):  # torch.Tensor, numpy arrays and scalars
        return value.tolist()
    if hasattr(value, "save") and hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    if hasattr(value, "__dict__"):  # e.g. a Conversation
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


class JsonLinesSink:
    """JSON lines to a file (or stdout), one flushed line per result.

    With `resume`, the complete lines already there are counted (`done`, and `errors` among them) and a
    torn last line is cut off, so the run continues at the first input without a result.
    """

    def __init__(self, path: str, resume: bool = False):
        self.path = path
        self.done = 0
        self.errors = 0
        if path == "-":
            if resume:
                raise UsageError("--resume needs an output file, not '-' (stdout).")
            self.stream = sys.stdout.buffer
            return
        target = Path(path)
        if not target.parent.is_dir():
            raise UsageError(f"output {path!r}: the folder {str(target.parent)!r} does not exist.")
        if resume and target.is_file():
            complete = self._count(target)
            with open(target, "r+b") as f:
                f.truncate(complete)
        self.stream = open(target, "ab" if resume else "wb")

    def _count(self, target: Path) -> int:
        """Count complete lines (and error lines); return the byte length of the complete part."""
        complete = 0
        with open(target, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a torn last line: the run was killed while writing it
                try:
                    result = json.loads(line)
                except ValueError:
                    break
                self.done += 1
                self.errors += isinstance(result, dict) and "error" in result
                complete += len(line)
        return complete

    def write(self, record: dict) -> None:
        self.stream.write((to_json(record) + "\n").encode("utf-8"))
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not sys.stdout.buffer:
            self.stream.close()


def _cell(value) -> str:
    return value if isinstance(value, str) else to_json(value)


class CsvSink:
    """CSV/TSV: the input record's columns (from the first row), then `output` and `error` as JSON strings."""

    def __init__(self, path: str, delimiter: str):
        self.done = self.errors = 0
        self.stream = open(path, "w", newline="", encoding="utf-8")
        self.delimiter = delimiter
        self.writer = None

    def write(self, record: dict) -> None:
        if self.writer is None:
            fields = [k for k in record if k not in ("output", "error")] + ["output", "error"]
            self.writer = csv.DictWriter(self.stream, fields, delimiter=self.delimiter, restval="",
                                         extrasaction="ignore")
            self.writer.writeheader()
        self.writer.writerow({k: _cell(v) for k, v in record.items()})
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


class ParquetSink:
    """Parquet: row groups of 1024 results; input columns as typed in the first group, `output`/`error` JSON."""

    def __init__(self, path: str, group: int = 1024):
        self.done = self.errors = 0
        self.path, self.group = path, group
        self.buffer: list[dict] = []
        self.writer = None
        self.schema = None

    def write(self, record: dict) -> None:
        row = {k: v for k, v in record.items() if k not in ("output", "error")}
        row["output"] = to_json(record["output"]) if "output" in record else None
        row["error"] = record.get("error")
        self.buffer.append(row)
        if len(self.buffer) >= self.group:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        pa = _pyarrow()
        if self.writer is None:
            inferred = pa.Table.from_pylist(self.buffer).schema
            fields = [f for f in inferred if f.name not in ("output", "error")]
            self.schema = pa.schema(fields + [pa.field("output", pa.string()), pa.field("error", pa.string())])
            self.writer = _pyarrow_parquet().ParquetWriter(self.path, self.schema)
        self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
        self.buffer = []

    def close(self) -> None:
        self._flush()
        if self.writer is not None:
            self.writer.close()


def open_sink(path: str, resume: bool = False):
    kind = _format(path, OUTPUT_FORMATS, "output")
    if kind in ("-", ".jsonl"):
        return JsonLinesSink(path, resume)
    if resume:
        raise UsageError(f"--resume needs a .jsonl output (results are counted line by line); got {path!r}.")
    if not Path(path).parent.is_dir():
        raise UsageError(f"output {path!r}: the folder {str(Path(path).parent)!r} does not exist.")
    if kind == ".parquet":
        return ParquetSink(path)
    return CsvSink(path, "\t" if kind == ".tsv" else ",")


# ----- optional libraries -----
def _pyarrow():
    try:
        import pyarrow
    except ImportError as error:
        raise ImportError('Reading or writing Parquet needs pyarrow: pip install "inferline[cli]"') from error
    return pyarrow


def _pyarrow_parquet():
    _pyarrow()
    import pyarrow.parquet

    return pyarrow.parquet
