"""`inferline eval` and `inferline compare` in subprocesses: the reported metrics must equal scikit-learn's,
seqeval's, the SQuAD script's (as transformers ships it), rouge-score's / sacrebleu's and jiwer's on the
predictions transformers' pipeline makes for the same rows. References are built from those predictions
(some kept, some changed) so that no metric is trivially 0 or 1."""

from __future__ import annotations

import csv
import json

import pytest

from cli.cases import NLI, QA, TEXTS
from cli.helpers import inferline, inferline_many, write_jsonl

MORE = TEXTS + ["What a dull and boring film.", "Berlin is lovely in spring.", "I am not sure about this one.",
                "The service was fine, nothing special.", "Rain again, all week long.", "Best day ever!"]
LABELS = ["NEGATIVE", "NEUTRAL", "POSITIVE"]


def _approx(report: dict, expected: dict, keys=None):
    for key in keys or expected:
        assert report[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


def _top(result):
    while isinstance(result, list):
        result = result[0]
    return result["labels"][0] if "labels" in result else result["label"]


def _sklearn(references, predictions) -> dict:
    from sklearn import metrics

    labels = sorted(set(references) | set(predictions))
    expected = {"accuracy": metrics.accuracy_score(references, predictions)}
    for average in ("macro", "micro", "weighted"):
        expected[f"precision_{average}"] = metrics.precision_score(references, predictions, average=average,
                                                                   zero_division=0)
        expected[f"recall_{average}"] = metrics.recall_score(references, predictions, average=average, zero_division=0)
        expected[f"f1_{average}"] = metrics.f1_score(references, predictions, average=average, zero_division=0)
    report = metrics.classification_report(references, predictions, labels=labels, output_dict=True, zero_division=0)
    per_class = {label: {"precision": report[label]["precision"], "recall": report[label]["recall"],
                         "f1": report[label]["f1-score"], "support": report[label]["support"]} for label in labels}
    matrix = metrics.confusion_matrix(references, predictions, labels=labels).tolist()
    return expected, per_class, {"labels": labels, "matrix": matrix}


def _shifted(labels: list[str], every: int, choices: list[str]) -> list[str]:
    """Every `every`-th label replaced by the next one of `choices`: some right, some wrong."""
    return [choices[(choices.index(x) + 1) % len(choices)] if i % every == 0 else x for i, x in enumerate(labels)]


def _png_size(path):
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def test_classification_equals_scikit_learn(tmp_path, checkpoint, theirs):
    model = checkpoint("bert", "sequence-classification")
    predicted = [_top(r) for r in theirs("text-classification", model)(MORE)]
    gold = _shifted(predicted, 3, LABELS)
    with open(tmp_path / "data.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "text", "label"]] + [[i, t, g] for i, (t, g) in enumerate(zip(MORE, gold))])
    write_jsonl(tmp_path / "ids.jsonl", [{"text": t, "label": LABELS.index(g)} for t, g in zip(MORE, gold)])

    done = inferline("eval", "sentiment-analysis", "--model", model, "--data", "data.csv", "--report", "report.json",
                     "--plot", "matrix.png", "--batch-size", 4, "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n"] == len(MORE) and report["errors"] == 0 and report["items_per_second"] > 0
    expected, per_class, matrix = _sklearn(gold, predicted)
    _approx(report["metrics"], expected)
    assert report["metrics"]["per_class"].keys() == per_class.keys()
    for label, figures in per_class.items():
        assert report["metrics"]["per_class"][label] == pytest.approx(figures), label
    assert report["metrics"]["confusion_matrix"] == matrix
    assert 0 < expected["accuracy"] < 1
    assert "accuracy" in done.stdout and "f1_macro" in done.stdout and "POSITIVE" in done.stdout
    width, height = _png_size(tmp_path / "matrix.png")
    assert width >= 400 and height >= 300

    # Integer labels are named by the model's id2label; --limit keeps the first rows only.
    results = inferline_many([["eval", "text-classification", "--model", model, "--data", "ids.jsonl", "--report",
                               "ids.json", "--no-progress"],
                              ["eval", "text-classification", "--model", model, "--data", "data.csv", "--limit", 5,
                               "--report", "five.json", "--no-progress"]], cwd=tmp_path)
    assert [r["rc"] for r in results] == [0, 0], results
    _approx(json.loads((tmp_path / "ids.json").read_text())["metrics"], expected)
    five = json.loads((tmp_path / "five.json").read_text())
    assert five["n"] == 5
    _approx(five["metrics"], _sklearn(gold[:5], predicted[:5])[0])


def test_zero_shot_labels_come_from_the_data(tmp_path, checkpoint, theirs):
    model = checkpoint("bert", "sequence-classification", **NLI)
    choices = ["cinema", "travel", "weather"]
    predicted = [_top(r) for r in theirs("zero-shot-classification", model)(MORE, candidate_labels=choices)]
    gold = _shifted(predicted, 2, choices)
    write_jsonl(tmp_path / "data.jsonl", [{"text": t, "label": g} for t, g in zip(MORE, gold)])
    results = inferline_many([["eval", "zero-shot-classification", "--model", model, "--data", "data.jsonl",
                               "--report", "report.json", "--batch-size", 3, "--no-progress"]], cwd=tmp_path)
    assert results[0]["rc"] == 0, results
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["metrics"]["confusion_matrix"]["labels"] == sorted(set(gold) | set(predicted))
    _approx(report["metrics"], _sklearn(gold, predicted)[0])


def _word_tags(entities, words):
    """Entity groups → IOB2 word tags, by each word's start offset in the space-joined sentence."""
    starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    tags = []
    for i, start in enumerate(starts):
        inside = [e for e in entities if e["start"] <= start < e["end"]]
        if not inside:
            tags.append("O")
        else:
            first = min(j for j, s in enumerate(starts) if inside[0]["start"] <= s)
            tags.append(("B-" if first == i else "I-") + inside[0]["entity_group"])
    return tags


def test_token_classification_equals_seqeval(tmp_path, checkpoint, theirs):
    from seqeval import metrics

    model = checkpoint("bert", "token-classification")
    sentences = [t.rstrip(".!").split() for t in MORE[:8]]
    pipe = theirs("token-classification", model)
    predicted = []
    for words in sentences:
        result = pipe(words, is_split_into_words=True, aggregation_strategy="first")
        predicted.append(_word_tags(result[0] if result and isinstance(result[0], list) else result, words))
    gold = [tags if i % 2 else ["O"] * (len(tags) - 1) + ["B-LOC"] for i, tags in enumerate(predicted)]
    write_jsonl(tmp_path / "ner.jsonl", [{"tokens": w, "tags": g} for w, g in zip(sentences, gold)])
    done = inferline("eval", "ner", "--model", model, "--data", "ner.jsonl", "--report", "report.json",
                     "--batch-size", 4, "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())["metrics"]
    expected = {"precision": metrics.precision_score(gold, predicted), "recall": metrics.recall_score(gold, predicted),
                "f1": metrics.f1_score(gold, predicted), "accuracy": metrics.accuracy_score(gold, predicted)}
    _approx(report, expected)
    assert 0 < expected["f1"] < 1
    by_type = metrics.classification_report(gold, predicted, output_dict=True, zero_division=0)
    for name, figures in report["per_class"].items():
        assert figures["f1"] == pytest.approx(by_type[name]["f1-score"]) and figures["support"] == by_type[name][
            "support"]


def test_question_answering_equals_the_squad_script(tmp_path, checkpoint, theirs):
    from transformers.data.metrics.squad_metrics import compute_exact, compute_f1

    model = checkpoint("bert", "question-answering")
    questions = QA + [{"question": "What does she like?", "context": QA[1]["context"]},
                      {"question": "Is it raining?", "context": "The weather today is terrible, but dry."}]
    pipe = theirs("question-answering", model)
    predicted = [pipe(q, handle_impossible_answer=True)["answer"] for q in questions]
    golds = [[predicted[0]], [predicted[1] + " and more", "something else"], [], ["tea"]]
    rows = [{**q, "answers": {"text": g, "answer_start": [0] * len(g)}} for q, g in zip(questions, golds)]
    write_jsonl(tmp_path / "squad.jsonl", rows)
    done = inferline("eval", "question-answering", "--model", model, "--data", "squad.jsonl", "--report", "r.json",
                     "--param", "handle_impossible_answer=true", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())["metrics"]
    exact = [max(compute_exact(g, p) for g in (gold or [""])) for gold, p in zip(golds, predicted)]
    f1 = [max(compute_f1(g, p) for g in (gold or [""])) for gold, p in zip(golds, predicted)]
    answerable = [i for i, g in enumerate(golds) if g]
    unanswerable = [i for i, g in enumerate(golds) if not g]
    expected = {"exact_match": 100 * sum(exact) / 4, "f1": 100 * sum(f1) / 4,
                "has_answer_exact_match": 100 * sum(exact[i] for i in answerable) / len(answerable),
                "has_answer_f1": 100 * sum(f1[i] for i in answerable) / len(answerable),
                "no_answer_exact_match": 100 * sum(exact[i] for i in unanswerable) / len(unanswerable),
                "no_answer_f1": 100 * sum(f1[i] for i in unanswerable) / len(unanswerable)}
    _approx(report, expected)
    assert 0 < expected["f1"] < 100


def test_generation_equals_rouge_score_and_sacrebleu(tmp_path, checkpoint, theirs):
    import sacrebleu
    from rouge_score import rouge_scorer

    params = {"max_new_tokens": 6, "num_beams": 1, "do_sample": False}
    commands, expected = [], {}
    for task, arch in (("summarization", "bart"), ("translation", "marian")):
        model = checkpoint(arch, "seq2seq-lm")
        outputs = theirs(task, model)(MORE[:6], **params)
        predicted = [next(iter(o[0].values())) if isinstance(o, list) else next(iter(o.values())) for o in outputs]
        gold = [p if i % 2 == 0 else p.split(" ")[0] + " the cat sat" for i, p in enumerate(predicted)]
        write_jsonl(tmp_path / f"{task}.jsonl", [{"text": t, "label": g} for t, g in zip(MORE, gold)])
        commands.append(["eval", task, "--model", model, "--data", f"{task}.jsonl", "--report", f"{task}.json",
                         "--batch-size", 3, "--no-progress"]
                        + [a for k, v in params.items() for a in ("--param", f"{k}={json.dumps(v)}")])
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
        scores = [scorer.score(g, p) for g, p in zip(gold, predicted)]
        expected[task] = {name: sum(s[name].fmeasure for s in scores) / len(scores)
                          for name in ("rouge1", "rouge2", "rougeL")}
        expected[task]["bleu"] = sacrebleu.corpus_bleu(predicted, [gold]).score
    results = inferline_many(commands, cwd=tmp_path)
    assert [r["rc"] for r in results] == [0, 0], results
    for task, figures in expected.items():
        _approx(json.loads((tmp_path / f"{task}.json").read_text())["metrics"], figures)
        assert 0 < figures["rouge1"] < 1


def test_transcription_metrics_equal_jiwer():
    import jiwer

    from inferline.evaluation import metrics

    references = ["the cat sat on the mat", "hello world", "one two three four"]
    predictions = ["the cat sat on a mat", "hello", "one two three four five"]
    assert metrics.transcription(references, predictions) == {"wer": jiwer.wer(references, predictions),
                                                              "cer": jiwer.cer(references, predictions)}


def test_compare_two_models(tmp_path, checkpoint, theirs):
    models = [checkpoint("bert", "sequence-classification"), checkpoint("distilbert", "sequence-classification")]
    first = [_top(r) for r in theirs("text-classification", models[0])(MORE)]
    gold = _shifted(first, 4, LABELS)
    with open(tmp_path / "data.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text", "label"]] + [[t, g] for t, g in zip(MORE, gold)])
    done = inferline("compare", "text-classification", "--models", *models, "--data", "data.csv", "--report",
                     "compare.json", "--plot", "compare.png", "--latency-samples", 4, "--batch-size", 4, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    reports = json.loads((tmp_path / "compare.json").read_text())["models"]
    assert [r["model"] for r in reports] == [str(m) for m in models]
    for model, report in zip(models, reports):
        pipe = theirs("text-classification", model)
        _approx(report["metrics"], _sklearn(gold, [_top(r) for r in pipe(MORE)])[0])
        assert report["parameters"] == pipe.model.num_parameters()
        assert 0 < report["latency_p50_ms"] <= report["latency_p95_ms"]
        assert report["items_per_second"] > 0 and report["load_seconds"] > 0 and report["peak_rss_mb"] > 50
    table = done.stdout
    assert "accuracy" in table and "p95 ms" in table and "peak RSS MB" in table and "*" in table
    width, height = _png_size(tmp_path / "compare.png")
    assert width >= 400 and height >= 300
