"""text-classification (alias sentiment-analysis): a label and score for a text or a text pair.

>>> classifier = pipeline("sentiment-analysis", model="distilbert/distilbert-base-uncased-finetuned-sst-2-english")
>>> classifier("I love it")
[{'label': 'POSITIVE', 'score': 0.9998...}]
"""

from __future__ import annotations

import warnings

import torch

from .base import Pipeline
from .text import check_max_length, check_text, check_truncation, encode_many, encoding_tensors

FUNCTIONS = ("default", "sigmoid", "softmax", "none")
_UNSET = object()


def apply_function(logits: torch.Tensor, function: str) -> torch.Tensor:
    if function == "sigmoid":
        return torch.sigmoid(logits)
    if function == "softmax":
        return torch.softmax(logits, dim=-1)
    return logits


def check_function(function_to_apply, accepted: tuple[str, ...]) -> str:
    """A function_to_apply name (or enum) → its lower-case name, or a ValueError listing the accepted ones."""
    name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
    if name not in accepted:
        raise ValueError(f"`function_to_apply` must be one of {', '.join(accepted)}; got {function_to_apply!r}.")
    return name


def default_function(config) -> str:
    """transformers' choice when function_to_apply is not given: regression → none,
    multi-label or a single label → sigmoid, otherwise softmax."""
    if config.problem_type == "regression":
        return "none"
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


class TextClassificationPipeline(Pipeline):
    """Classify texts; `top_k` (None = every label), `function_to_apply`, pairs as {"text", "text_pair"}."""

    def __call__(self, inputs=None, *args, **kwargs):
        # transformers' legacy shape: a lone string with no top_k gives a one-element list. (transformers
        # also wraps when top_k was set at construction, contradicting its docs; we follow the docs.)
        result = super().__call__(inputs, *args, **kwargs)
        if isinstance(inputs, str) and "top_k" not in kwargs and self._postprocess_params.get("legacy", True):
            return [result]
        return result

    def _sanitize_parameters(self, return_all_scores=None, function_to_apply=None, top_k=_UNSET,
                             truncation=None, max_length=None, padding=None, **tokenizer_kwargs):
        if tokenizer_kwargs:
            raise TypeError(f"Unknown parameter(s) for text-classification: {sorted(tokenizer_kwargs)}. Accepted: "
                            f"top_k, function_to_apply, return_all_scores, truncation, max_length, padding.")
        preprocess = {}
        if truncation is not None:
            preprocess["truncation"] = check_truncation(truncation)
        if max_length is not None:
            preprocess["max_length"] = check_max_length(max_length)
        postprocess = {}
        if top_k is not _UNSET:
            if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
                raise ValueError(f"`top_k` must be a positive integer or None (all labels); got {top_k!r}.")
            postprocess["top_k"], postprocess["legacy"] = top_k, False
        elif return_all_scores is not None:
            warnings.warn("`return_all_scores` is deprecated; use top_k=None instead of return_all_scores=True "
                          "or top_k=1 instead of return_all_scores=False.", UserWarning, stacklevel=3)
            postprocess["top_k"] = None if return_all_scores else 1
        if function_to_apply is not None:
            postprocess["function_to_apply"] = check_function(function_to_apply, FUNCTIONS)
        return preprocess, {}, postprocess

    def preprocess(self, inputs, truncation=None, max_length=None):
        return self.preprocess_batch([inputs], truncation, max_length)[0]

    def preprocess_batch(self, items, truncation=None, max_length=None):
        texts, pairs = zip(*(_text_and_pair(item) for item in items))
        encodings = encode_many(self, list(texts), list(pairs), truncation=truncation, max_length=max_length,
                                offsets=False)
        return [encoding_tensors(encoding, self._model_input_names()) for encoding in encodings]

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs)}

    def postprocess(self, model_outputs, function_to_apply=None, top_k=1, legacy=True):
        config = self.model.config
        if function_to_apply in (None, "default"):
            function_to_apply = default_function(config)
        scores = apply_function(model_outputs["logits"][0].float(), function_to_apply).tolist()
        if top_k == 1 and legacy:
            best = max(range(len(scores)), key=scores.__getitem__)  # the first of equal scores, as argmax
            return {"label": config.id2label[best], "score": scores[best]}
        results = [{"label": config.id2label[i], "score": s} for i, s in enumerate(scores)]
        if not legacy:
            results.sort(key=lambda r: r["score"], reverse=True)
            if top_k is not None:
                results = results[:top_k]
        return results


def _text_and_pair(inputs) -> tuple[str, str | None]:
    """One input → (text, text_pair or None): a string, or a dict {"text", "text_pair"}."""
    if isinstance(inputs, dict):
        if set(inputs) - {"text", "text_pair"} or "text" not in inputs:
            raise ValueError(f"A text-pair input must be a dict with keys 'text' and 'text_pair'; got keys "
                             f"{sorted(inputs, key=str)}.")
        pair = inputs.get("text_pair")
        return check_text(inputs["text"], "text"), check_text(pair, "text_pair") if pair is not None else None
    if isinstance(inputs, (list, tuple)):
        raise ValueError("To classify a text pair, pass a dict {'text': ..., 'text_pair': ...}; a list is read "
                         "as several separate texts.")
    return check_text(inputs), None
