"""What `inferline eval` measures for each task: the columns it reads, how a pipeline result becomes a
prediction, and which metric function scores the predictions. A new task adds one row to EVAL_TASKS."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import metrics


@dataclass(frozen=True)
class Evaluator:
    kind: str
    metrics: Callable[[list, list], dict]
    predict: Callable[[Any, Any], Any]  # (pipeline result, the row's input) → prediction
    reference: Callable[[Any, Any], Any]  # (the label cell, the pipeline) → reference
    headline: tuple[str, ...]  # the metrics shown in tables and compared; the first is plotted
    input_column: str = "text"
    label_column: str = "label"
    call_params: dict = field(default_factory=dict)  # parameters eval always passes
    lower_is_better: frozenset = frozenset()


def _parsed(cell):
    """A list/dict written into a CSV cell as JSON comes back as the list/dict."""
    if isinstance(cell, str) and cell[:1] in "[{":
        try:
            return json.loads(cell)
        except ValueError:
            pass
    return cell


def top_label(output) -> str:
    """The best label of a classification result: [{"label", "score"}, ...] or {"labels": [...], ...}."""
    while isinstance(output, list):
        if not output:
            raise ValueError("the pipeline returned no label")
        output = output[0]
    if isinstance(output, dict):
        if "labels" in output:
            return output["labels"][0]
        if "label" in output:
            return output["label"]
    raise ValueError(f"not a classification result: {output!r}")


def word_tags(output, words) -> list[str]:
    """Entity groups over pre-split words (aggregation "first") → one IOB2 tag per word."""
    words = _parsed(words)
    if output and isinstance(output[0], list):  # pipe(words) answers one pre-split sentence with a list of one
        output = output[0]
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1  # the pipeline joins the words with one space
    tags = ["O"] * len(words)
    for entity in output:
        group = entity.get("entity_group") or entity.get("entity", "")
        group = group[2:] if group[:2] in ("B-", "I-") else group
        covered = [i for i, s in enumerate(starts) if entity["start"] <= s < entity["end"]]
        for n, i in enumerate(covered):
            tags[i] = f"{'B' if n == 0 else 'I'}-{group}"
    return tags


def answer_text(output) -> str:
    if isinstance(output, list):
        output = output[0]
    return output["answer"]


def gold_answers(cell) -> list[str]:
    """SQuAD's {"text": [...], "answer_start": [...]}, a list of answers, or one string; [] = unanswerable."""
    cell = _parsed(cell)
    if isinstance(cell, dict):
        cell = cell.get("text", [])
    if isinstance(cell, str):
        return [cell]
    return [a["text"] if isinstance(a, dict) else a for a in cell]


def generated(output) -> str:
    """The text of a generation result: [{"summary_text"}], [{"translation_text"}], {"text"}, ..."""
    if isinstance(output, list):
        output = output[0]
    for key, value in output.items():
        if key.endswith("text") and isinstance(value, str):
            return value
    raise ValueError(f"not a text result: {output!r}")


def class_label(cell, pipe=None) -> str:
    """Labels are compared by name; an integer label is named by the model's id2label when it has one."""
    if isinstance(cell, str):
        return cell
    id2label = getattr(getattr(getattr(pipe, "model", None), "config", None), "id2label", None) or {}
    return id2label.get(cell, str(cell)) if isinstance(cell, int) else str(cell)


def _text(cell, pipe=None) -> str:
    return cell if isinstance(cell, str) else str(cell)


CLASSIFICATION = Evaluator("classification", metrics.classification, lambda out, _: top_label(out), class_label,
                           ("accuracy", "f1_macro", "f1_weighted"))
ENTITIES = Evaluator("entities", metrics.entities, word_tags, lambda cell, _: list(_parsed(cell)),
                     ("f1", "precision", "recall"), input_column="tokens", label_column="tags",
                     call_params={"is_split_into_words": True, "aggregation_strategy": "first"})
SQUAD = Evaluator("squad", metrics.squad, lambda out, _: answer_text(out), lambda cell, _: gold_answers(cell), ("f1", "exact_match"),
                  input_column="question,context", label_column="answers")
TEXT = Evaluator("generation", metrics.generated_text, lambda out, _: generated(out), _text,
                 ("rougeL", "rouge1", "rouge2", "bleu"))
SPEECH = Evaluator("transcription", metrics.transcription, lambda out, _: generated(out), _text, ("wer", "cer"),
                   input_column="audio", label_column="text", lower_is_better=frozenset({"wer", "cer"}))

EVAL_TASKS: dict[str, tuple[Evaluator, str | None]] = {  # task → (evaluator, its input column if not the default)
    "text-classification": (CLASSIFICATION, None),
    "zero-shot-classification": (CLASSIFICATION, None),
    "image-classification": (CLASSIFICATION, "image"),
    "zero-shot-image-classification": (CLASSIFICATION, "image"),
    "audio-classification": (CLASSIFICATION, "audio"),
    "zero-shot-audio-classification": (CLASSIFICATION, "audio"),
    "video-classification": (CLASSIFICATION, "video"),
    "token-classification": (ENTITIES, None),
    "question-answering": (SQUAD, None),
    "summarization": (TEXT, None),
    "translation": (TEXT, None),
    "text2text-generation": (TEXT, None),
    "automatic-speech-recognition": (SPEECH, None),
}
