"""Metrics per kind of task, over the well-kept libraries (imported when used: `pip install "inferline[eval]"`).

Names are the libraries' own: scikit-learn's `accuracy`, `precision_macro`, `f1_weighted`, ...;
seqeval's entity-level `precision` / `recall` / `f1`; jiwer's `wer` / `cer`; rouge-score's `rouge1`,
`rouge2`, `rougeL` (mean F-measure); sacrebleu's corpus `bleu` (0-100); and SQuAD's `exact_match` /
`f1` (0-100, as the official SQuAD v2 script).
"""

from __future__ import annotations

import collections
import re
import string


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f'inferline eval needs {module.split(".")[0]}: pip install "inferline[eval]"') from error


def classification(references: list[str], predictions: list[str]) -> dict:
    """Accuracy, macro/micro/weighted precision, recall and F1, per-class figures, confusion matrix."""
    metrics = _need("sklearn.metrics")
    labels = sorted(set(references) | set(predictions))
    result = {"accuracy": float(metrics.accuracy_score(references, predictions))}
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = metrics.precision_recall_fscore_support(references, predictions, labels=labels,
                                                             average=average, zero_division=0)
        result.update({f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)})
    p, r, f, support = metrics.precision_recall_fscore_support(references, predictions, labels=labels,
                                                               average=None, zero_division=0)
    result["per_class"] = {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                   "support": int(support[i])} for i, label in enumerate(labels)}
    matrix = metrics.confusion_matrix(references, predictions, labels=labels)
    result["confusion_matrix"] = {"labels": labels, "matrix": matrix.tolist()}
    return result


def entities(references: list[list[str]], predictions: list[list[str]]) -> dict:
    """seqeval in its default mode (IOB2, entity level): precision, recall, F1, token accuracy, per type."""
    seqeval = _need("seqeval.metrics")
    report = seqeval.classification_report(references, predictions, output_dict=True, zero_division=0)
    per_class = {name: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                        "f1": float(v["f1-score"]), "support": int(v["support"])}
                 for name, v in report.items() if "avg" not in name}
    return {"precision": float(seqeval.precision_score(references, predictions, zero_division=0)),
            "recall": float(seqeval.recall_score(references, predictions, zero_division=0)),
            "f1": float(seqeval.f1_score(references, predictions, zero_division=0)),
            "accuracy": float(seqeval.accuracy_score(references, predictions)),
            "per_class": per_class}


# ----- SQuAD (v1 and v2: unanswerable questions have no gold answer; the right prediction is "") -----
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and articles, squeeze whitespace (the SQuAD script's normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(gold: str, prediction: str) -> float:
    gold_tokens, pred_tokens = normalize_answer(gold).split(), normalize_answer(prediction).split()
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)  # both empty (no answer) → 1, else 0
    common = sum((collections.Counter(gold_tokens) & collections.Counter(pred_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad(references: list[list[str]], predictions: list[str]) -> dict:
    """Exact match and F1 (0-100), the best over each question's gold answers; [] = unanswerable."""
    exact, f1, has_answer = [], [], []
    for golds, prediction in zip(references, predictions):
        golds = [g for g in golds if normalize_answer(g)] or [""]
        exact.append(max(float(normalize_answer(g) == normalize_answer(prediction)) for g in golds))
        f1.append(max(_token_f1(g, prediction) for g in golds))
        has_answer.append(golds != [""])
    result = {"exact_match": 100 * _mean(exact), "f1": 100 * _mean(f1)}
    if any(has_answer) and not all(has_answer):  # SQuAD v2: the two halves apart as well
        for name, keep in (("has_answer", True), ("no_answer", False)):
            chosen = [i for i, h in enumerate(has_answer) if h == keep]
            result[f"{name}_exact_match"] = 100 * _mean([exact[i] for i in chosen])
            result[f"{name}_f1"] = 100 * _mean([f1[i] for i in chosen])
            result[f"{name}_total"] = len(chosen)
    return result


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def generated_text(references: list[str], predictions: list[str]) -> dict:
    """ROUGE-1/2/L (rouge-score, mean F-measure over the examples) and corpus BLEU (sacrebleu, 0-100)."""
    rouge = _need("rouge_score.rouge_scorer")
    sacrebleu = _need("sacrebleu")
    names = ("rouge1", "rouge2", "rougeL")
    scorer = rouge.RougeScorer(list(names))
    totals = dict.fromkeys(names, 0.0)
    for reference, prediction in zip(references, predictions):
        scores = scorer.score(reference, prediction)
        for name in names:
            totals[name] += scores[name].fmeasure
    result = {name: totals[name] / max(len(references), 1) for name in names}
    result["bleu"] = float(sacrebleu.corpus_bleu(predictions, [references]).score)
    return result


def transcription(references: list[str], predictions: list[str]) -> dict:
    """Word and character error rates over the whole corpus (jiwer)."""
    jiwer = _need("jiwer")
    return {"wer": float(jiwer.wer(references, predictions)), "cer": float(jiwer.cer(references, predictions))}
