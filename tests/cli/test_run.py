"""`inferline run` in subprocesses: every implemented task, every file format, stdin/stdout, bad rows, bad usage,
and `--resume` after a killed run. Each output must be what transformers' pipeline returns for that input."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from cli.cases import CASES, TEXTS
from cli.helpers import env, inferline, inferline_many, read_jsonl, write_jsonl
from parity.compare import assert_same

from inferline.tasks import PIPELINE_REGISTRY


def _params(params: dict) -> list[str]:
    return [a for key, value in params.items() for a in ("--param", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return checkpoint("bert", "sequence-classification")


@pytest.mark.parametrize("task", PIPELINE_REGISTRY.implemented_tasks())
def test_run_task(task, tmp_path, checkpoint, theirs):
    if task not in CASES:
        pytest.fail(f"{task!r} is implemented but has no row in tests/cli/cases.py CASES: add one (a tiny checkpoint, "
                    f"a few inputs, call parameters) so the command line is tested on it.")
    case = CASES[task]
    model = case.builder() if case.builder else checkpoint(case.arch, case.head, **case.overrides)
    inputs = case.inputs(tmp_path) if callable(case.inputs) else case.inputs  # files made for the test
    rows = [{"id": i, "x": value} for i, value in enumerate(inputs)]
    source, target = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    done = inferline("run", task, "--model", model, "--input", source, "--output", target, "--column", "x",
                     "--batch-size", 2, "--no-progress", *_params(case.params))
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(target)
    assert [(line["id"], line["x"]) for line in lines] == [(row["id"], row["x"]) for row in rows]
    pipe = theirs(case.oracle_task or task, model)
    for row, line in zip(rows, lines):
        expected = case.expected(pipe, row["x"], case.params) if case.expected else pipe(row["x"], **case.params)
        ours = line["output"][case.compare_key] if case.compare_key else line["output"]
        assert_same(ours, expected, path=f"row {row['id']}")


def test_every_format_in_and_out(tmp_path, classifier, theirs):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text", "id"]] + [[t, i] for i, t in enumerate(TEXTS)])
    with open(tmp_path / "in.tsv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t").writerows([["id", "text"]] + [[i, t] for i, t in enumerate(TEXTS)])
    pq.write_table(pa.table({"id": list(range(len(TEXTS))), "text": TEXTS}), tmp_path / "in.parquet")
    write_jsonl(tmp_path / "in.jsonl", TEXTS)
    base = ["run", "text-classification", "--model", classifier, "--no-progress", "--batch-size", 3]
    results = inferline_many([
        base + ["--input", "in.txt", "--output", "txt.jsonl"],
        base + ["--input", "in.csv", "--output", "csv.csv"],  # the first column by default
        base + ["--input", "in.tsv", "--output", "tsv.tsv", "--column", "text"],
        base + ["--input", "in.parquet", "--output", "parquet.parquet", "--column", "text"],
        base + ["--input", "in.jsonl", "--output", "jsonl.jsonl", "--param", "top_k=2"],  # 2 parsed as JSON
        base + ["--input", "in.parquet", "--output", "parquet.jsonl", "--column", "text"],
    ], cwd=tmp_path)
    assert [r["rc"] for r in results] == [0] * 6, results
    pipe = theirs("text-classification", classifier)
    expected = [pipe(t) for t in TEXTS]

    assert [line["input"] for line in read_jsonl(tmp_path / "txt.jsonl")] == TEXTS
    assert_same([line["output"] for line in read_jsonl(tmp_path / "txt.jsonl")], expected)
    for name, delimiter in (("csv.csv", ","), ("tsv.tsv", "\t")):
        with open(tmp_path / name, newline="", encoding="utf-8") as f:
            table = list(csv.DictReader(f, delimiter=delimiter))
        assert [(row["id"], row["text"], row["error"]) for row in table] == [(str(i), t, "") for i, t in
                                                                             enumerate(TEXTS)]
        assert_same([json.loads(row["output"]) for row in table], expected, path=name)
    table = pq.read_table(tmp_path / "parquet.parquet").to_pylist()
    assert [(row["id"], row["text"], row["error"]) for row in table] == [(i, t, None) for i, t in enumerate(TEXTS)]
    assert_same([json.loads(row["output"]) for row in table], expected, path="parquet")
    assert [line["id"] for line in read_jsonl(tmp_path / "parquet.jsonl")] == list(range(len(TEXTS)))
    assert_same([line["output"] for line in read_jsonl(tmp_path / "jsonl.jsonl")],
                [pipe(t, top_k=2) for t in TEXTS])


def test_stdin_to_stdout_with_progress_on_stderr(classifier, theirs):
    rows = [TEXTS[0], {"text": TEXTS[1]}, {"text": "I like it", "text_pair": "It is good"}]
    done = inferline("run", "sentiment-analysis", "--model", classifier, "--input", "-", "--output", "-",
                     stdin="".join(json.dumps(r) + "\n" for r in rows))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # stdout holds the JSON lines only
    pipe = theirs("text-classification", classifier)
    assert [line.get("input", line) for line in lines][0] == TEXTS[0]
    assert lines[1]["text"] == TEXTS[1] and lines[2]["text_pair"] == "It is good"
    assert_same([line["output"] for line in lines], [pipe(TEXTS[0]), pipe(TEXTS[1]), pipe(rows[2])])
    assert "it/s" in done.stderr and "3 rows" in done.stderr  # tqdm's rate, then the summary


def test_bad_rows_become_error_lines_and_exit_1(tmp_path, classifier, theirs):
    lines = [json.dumps({"text": TEXTS[0]}), json.dumps({"text": ""}), "{not json", json.dumps({"other": 1}),
             json.dumps({"text": TEXTS[1]}), json.dumps({"text": None}), json.dumps({"text": TEXTS[2]})]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = inferline("run", "text-classification", "--model", classifier, "--input", tmp_path / "in.jsonl",
                     "--output", tmp_path / "out.jsonl", "--column", "text", "--batch-size", 4, "--no-progress")
    assert done.returncode == 1
    assert "7 rows, 4 failed, 3 ok" in done.stderr and "Traceback" not in done.stderr
    out = read_jsonl(tmp_path / "out.jsonl")
    assert len(out) == 7
    assert [("error" in line, "output" in line) for line in out] == [
        (False, True), (True, False), (True, False), (True, False), (False, True), (True, False), (False, True)]
    assert "empty" in out[1]["error"] and "JSON" in out[2]["error"] and "'text'" in out[3]["error"]
    assert out[2]["input"] == "{not json" and out[3]["other"] == 1
    pipe = theirs("text-classification", classifier)
    assert_same([out[i]["output"] for i in (0, 4, 6)], [pipe(TEXTS[i]) for i in range(3)])


def test_usage_errors_exit_2_before_any_model_work(tmp_path, classifier):
    (tmp_path / "in.txt").write_text("hello\n", encoding="utf-8")
    (tmp_path / "in.csv").write_text("text,label\nhello,POSITIVE\n", encoding="utf-8")
    (tmp_path / "ner.jsonl").write_text('{"tokens": ["a"], "tags": ["O"]}\n', encoding="utf-8")
    missing_model = tmp_path / "no-such-model"
    run = ["run", "text-classification", "--model", classifier, "--input", "in.txt", "--output", "out.jsonl"]
    checks = [  # (argv, what the message must say)
        (["run", "text-classification", "--model", missing_model, "--input", "in.txt", "--output", "o.jsonl",
          "--param", "topk=2"], "['topk']"),  # named before the (missing) model is looked at
        (["run", "sentiment-analyss"] + run[2:], "Did you mean 'sentiment-analysis'"),
        (run[:2] + ["--model", missing_model] + run[4:], "no-such-model"),
        (run[:4] + ["--input", "in.xml", "--output", "o.jsonl"], "unknown format '.xml'"),
        (run[:4] + ["--input", "nothing.txt", "--output", "o.jsonl"], "no such file"),
        (run[:4] + ["--input", "in.csv", "--output", "o.jsonl", "--column", "nope"], "no such column"),
        (run[:4] + ["--input", "in.txt", "--output", "o.csv", "--resume"], "--resume needs a .jsonl"),
        (run[:4] + ["--input", "in.txt", "--output", "missing/o.jsonl"], "does not exist"),
        (run + ["--param", "top_k"], "KEY=VALUE"),
        (run + ["--param", "top_k=0"], "top_k"),
        (run + ["--batch-size", "0"], "positive integer"),
        (["run", "text-classification", "--input", "in.txt", "--output", "o.jsonl"], "--model"),
        (["eval", "fill-mask", "--model", classifier, "--data", "in.csv"], "no metrics for 'fill-mask'"),
        (["eval", "text-classification", "--model", classifier, "--data", "in.csv", "--label-column", "gold"],
         "--label-column gold"),
        (["eval", "ner", "--model", classifier, "--data", "ner.jsonl", "--plot", "x.png"], "confusion matrix"),
        (["compare", "text-classification", "--models", classifier, "--data", "in.csv"], "at least two"),
    ]
    unimplemented = [t for t, s in PIPELINE_REGISTRY.tasks.items() if s.pipeline_class is None]
    if unimplemented:
        checks.append((["run", unimplemented[0]] + run[2:], "not implemented yet"))
    results = inferline_many([argv for argv, _ in checks], cwd=tmp_path)
    for (argv, message), result in zip(checks, results):
        assert result["rc"] == 2, (argv, result)
        assert message in result["stderr"] and "Traceback" not in result["stderr"], (argv, result["stderr"])
    # And as a real process: exit status 2, a usage line, no traceback.
    done = inferline(*checks[0][0], cwd=tmp_path)
    assert done.returncode == 2 and "usage: inferline run" in done.stderr and "Traceback" not in done.stderr


def test_resume_after_a_killed_run(tmp_path, classifier, theirs):
    texts = [f"sentence number {i} is {'long ' * (i % 7)}here" for i in range(3000)]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "inferline", "run", "text-classification", "--model", str(classifier), "--input",
            str(tmp_path / "in.txt"), "--output", str(target), "--batch-size", "8", "--no-progress"]
    process = subprocess.Popen(argv, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if target.is_file() and target.stat().st_size > 20_000:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed; give it more rows"
    done_before = target.read_bytes().count(b"\n")
    assert 0 < done_before < len(texts)
    with open(target, "ab") as f:
        f.write(b'{"input": "sentence number')  # a torn last line, as a kill during a write leaves
    done = subprocess.run(argv + ["--resume"], env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"({done_before} already there)" in done.stderr
    lines = read_jsonl(target)
    assert [line["input"] for line in lines] == texts  # no duplicate, no missing line, in input order
    pipe = theirs("text-classification", classifier)
    around = [0, 1, done_before - 1, done_before, done_before + 1, len(texts) - 1]
    assert_same([lines[i]["output"] for i in around], [pipe(texts[i]) for i in around])
