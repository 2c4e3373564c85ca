"""zero-shot-classification: score labels chosen at call time with a model trained on NLI.

>>> classifier = pipeline("zero-shot-classification", model="facebook/bart-large-mnli")
>>> classifier("I have a problem with my iphone that needs to be resolved asap!!",
...            candidate_labels=["urgent", "not urgent", "phone", "tablet", "computer"])
{'sequence': 'I have a problem with my iphone that needs to be resolved asap!!',
 'labels': ['urgent', 'phone', 'computer', 'not urgent', 'tablet'], 'scores': [0.504, 0.479, 0.013, 0.003, 0.002]}

Each label becomes the hypothesis `hypothesis_template.format(label)` for the premise (the sequence);
the model's entailment logit says how well the label fits. One piece per (sequence, label) pair, as in
transformers 4.57.6; with batch_size > 1 the base batches pairs across labels and sequences, sorted by
length, so many labels no longer mean one model call each.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .base import ChunkPipeline
from .text import check_text, encoding_tensors, model_token_limit

DEFAULT_TEMPLATE = "This example is {}."


def parse_labels(labels: Any) -> list:
    """candidate_labels as a list, or a comma-separated string → the list of labels (non-empty)."""
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    elif isinstance(labels, (list, tuple)):
        labels = list(labels)
    else:
        raise TypeError(f"`candidate_labels` must be a list of labels or a comma-separated string; got "
                        f"{type(labels).__name__}: {labels!r}.")
    if not labels:
        raise ValueError("`candidate_labels` is empty; give at least one label, e.g. candidate_labels=['sports', "
                         "'politics'] or 'sports, politics'.")
    return labels


def hypotheses(template: Any, labels: list) -> list[str]:
    """Each label put into the template; a template with no place for the label is an error (as transformers)."""
    if not isinstance(template, str):
        raise TypeError(f"`hypothesis_template` must be a string such as {DEFAULT_TEMPLATE!r}; got "
                        f"{type(template).__name__}: {template!r}.")
    try:
        filled = [template.format(label) for label in labels]
    except (IndexError, KeyError, ValueError) as error:
        raise ValueError(f"`hypothesis_template` {template!r} cannot be formatted with a label ({error!r}); use "
                         f"one positional field {{}} where the label goes, e.g. {DEFAULT_TEMPLATE!r}.") from None
    if filled[0] == template:
        raise ValueError(f"`hypothesis_template` {template!r} has no {{}} where the label should go; e.g. "
                         f"{DEFAULT_TEMPLATE!r}.")
    return filled


class ZeroShotClassificationPipeline(ChunkPipeline):
    """NLI zero-shot classification: `candidate_labels` (list or comma-separated string, or the second
    positional argument), `hypothesis_template` ("This example is {}."), `multi_label` (False)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.entailment_id == -1:
            self.warn_once("entailment", "No label in the model config's label2id starts with 'entail', so the "
                                         "entailment label id is taken as -1 (the last label). Give the model a "
                                         "descriptive label2id for correct scores.")

    @property
    def entailment_id(self) -> int:
        """The id of the first label2id entry starting with "entail" (any case), else -1."""
        for label, index in self.model.config.label2id.items():
            if label.lower().startswith("entail"):
                return index
        return -1

    positional_parameters = ("candidate_labels",)  # classifier(text, ["a", "b"]), as transformers

    def __call__(self, sequences=None, *args, **kwargs):
        kwargs = self._positional_to_keywords(args, kwargs)
        if kwargs.get("candidate_labels") is None and "candidate_labels" not in self._preprocess_params:
            raise ValueError("zero-shot-classification needs `candidate_labels`, e.g. "
                             "classifier(text, candidate_labels=['sports', 'politics']).")
        return super().__call__(sequences, **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, multi_label=None,
                             multi_class=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for zero-shot-classification: {sorted(unknown)}. Accepted: "
                            f"candidate_labels, hypothesis_template, multi_label.")
        preprocess, postprocess = {}, {}
        if candidate_labels is not None:
            preprocess["candidate_labels"] = parse_labels(candidate_labels)
        if hypothesis_template is not None:
            hypotheses(hypothesis_template, preprocess.get("candidate_labels", ["label"]))
            preprocess["hypothesis_template"] = hypothesis_template
        if multi_class is not None:
            warnings.warn("`multi_class` is deprecated; use `multi_label`.", UserWarning, stacklevel=4)
            multi_label = multi_class if multi_label is None else multi_label
        if multi_label is not None:
            postprocess["multi_label"] = bool(multi_label)
        return preprocess, {}, postprocess

    def preprocess(self, sequence, **params):
        return self.preprocess_batch([sequence], **params)[0]

    def preprocess_batch(self, items, candidate_labels=None, hypothesis_template=DEFAULT_TEMPLATE) -> list[list[dict]]:
        """One piece per (sequence, label) pair; the pairs of all the items are tokenised in one Rust call."""
        sequences = [check_text(item, "sequences") for item in items]
        if candidate_labels is None:
            raise ValueError("zero-shot-classification needs `candidate_labels`.")
        labels = parse_labels(candidate_labels)
        filled = hypotheses(hypothesis_template, labels)
        encodings = self._encode_pairs([s for s in sequences for _ in labels], filled * len(sequences))
        names = self._model_input_names()
        return [[{**encoding_tensors(encoding, names), "candidate_label": label, "sequence": sequence}
                 for label, encoding in zip(labels, encodings[i * len(labels):(i + 1) * len(labels)])]
                for i, sequence in enumerate(sequences)]

    def _encode_pairs(self, premises: list[str], hypotheses: list[str]) -> list:
        """(premise, hypothesis) pairs, tokenised once; over-long pairs lose premise tokens only."""
        limit = model_token_limit(self)
        try:
            encodings = [e[0] for e in self.tokenizer.encode_batch(premises, hypotheses, max_length=limit,
                                                                   truncation="only_first" if limit else False)]
        except Exception:  # tokenizers refuses when a premise is too short to cut enough from it: find which
            encodings = [e[0] for e in self.tokenizer.encode_batch(premises, hypotheses)]
            too_long = [i for i, e in enumerate(encodings) if e.sequence_ids.count(0) <= len(e.ids) - limit]
            raise self._no_room(hypotheses[too_long[0] if too_long else 0], limit) from None
        for encoding, hypothesis in zip(encodings, hypotheses):
            if encoding.overflowing and 0 not in encoding.sequence_ids:  # the whole premise was cut away
                raise self._no_room(hypothesis, limit)
        if any(e.overflowing for e in encodings):
            self.warn_once("truncation", f"A sequence with its hypothesis was truncated to the model's limit of "
                                         f"{limit} tokens.")
        return encodings

    @staticmethod
    def _no_room(hypothesis: str, limit: int) -> ValueError:
        return ValueError(f"The hypothesis {hypothesis!r} takes too many of the model's {limit} tokens to leave room "
                          f"for the sequence; use a shorter hypothesis_template or label.")

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs)}

    def postprocess(self, model_outputs, multi_label=False):
        labels = [output["candidate_label"] for output in model_outputs]
        logits = torch.cat([output["logits"] for output in model_outputs]).float()  # (L, num_nli_labels)
        entailment = self.entailment_id
        if multi_label or len(labels) == 1:
            # Each label on its own: entailment against contradiction.
            contradiction = -1 if entailment == 0 else 0
            scores = torch.softmax(logits[:, [contradiction, entailment]], dim=-1)[:, 1]
        else:
            scores = torch.softmax(logits[:, entailment], dim=0)
        scores = scores.tolist()
        # Best first; equal scores keep transformers' order (reversed stable argsort: later label first).
        order = sorted(range(len(labels)), key=lambda i: (scores[i], i), reverse=True)
        return {"sequence": model_outputs[0]["sequence"], "labels": [labels[i] for i in order],
                "scores": [scores[i] for i in order]}
