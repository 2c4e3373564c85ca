"""zero-shot-image-classification: score an image against labels you name, with a CLIP-style model.

>>> classify = pipeline("zero-shot-image-classification", model="openai/clip-vit-base-patch32")
>>> classify("cat.png", candidate_labels=["cat", "dog"])
[{'score': 0.99..., 'label': 'cat'}, {'score': 0.00..., 'label': 'dog'}]

Scores are a softmax over the labels or independent sigmoids, as the model declares (`scores`), and texts
are padded as it declares (`text_padding`: SigLIP's 64 tokens).
"""

from __future__ import annotations

import warnings

import torch

from .base import Pipeline
from .vision import ImagePipelineMixin, encode_texts
from .zero_shot_classification import hypotheses, parse_labels

DEFAULT_TEMPLATE = "This is a photo of {}."


class ZeroShotImageClassificationPipeline(ImagePipelineMixin, Pipeline):
    """`candidate_labels` (a list, or a comma-separated string), `hypothesis_template`, `timeout`."""

    needs_tokenizer = True

    def __call__(self, inputs=None, candidate_labels=None, **kwargs):
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, timeout=None,
                             tokenizer_kwargs=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for zero-shot-image-classification: {sorted(unknown)}. Accepted: "
                            f"candidate_labels, hypothesis_template, timeout, tokenizer_kwargs.")
        pre = {}
        if candidate_labels is not None:
            # transformers 4.57.6 iterates a string by character; split it as zero-shot-classification does
            pre["candidate_labels"] = parse_labels(candidate_labels)
        if hypothesis_template is not None:
            pre["hypothesis_template"] = hypothesis_template
        if timeout is not None:
            pre["timeout"] = timeout
        if tokenizer_kwargs is not None:
            warnings.warn("`tokenizer_kwargs` is deprecated (as in transformers).", FutureWarning, stacklevel=3)
            pre["tokenizer_kwargs"] = dict(tokenizer_kwargs)
        return pre, {}, {}

    def preprocess(self, image, candidate_labels=None, hypothesis_template=DEFAULT_TEMPLATE, timeout=None,
                   tokenizer_kwargs=None):
        if candidate_labels is None:
            raise ValueError("zero-shot-image-classification needs `candidate_labels`, e.g. "
                             "candidate_labels=['cat', 'dog'].")
        inputs = self.pixel_inputs(image, timeout)[0]
        options = {**self.model.text_padding, **(tokenizer_kwargs or {})}
        ids, mask = encode_texts(self.tokenizer, hypotheses(hypothesis_template, candidate_labels), **options)
        return {**inputs, "input_ids": ids, "attention_mask": mask, "candidate_labels": candidate_labels}

    def _forward(self, model_inputs):
        pixels = self.model_dtype_inputs({"pixel_values": model_inputs["pixel_values"]})["pixel_values"]
        ids, mask = model_inputs["input_ids"], model_inputs["attention_mask"]  # (B, L, T)
        names = self.tokenizer.config.get("model_input_names")
        if names is not None and "attention_mask" not in names:  # SigLIP's tokenizer gives no mask
            mask = None
        images = self.model.image_embeds(pixels)
        if bool((ids == ids[:1]).all()):  # one label set for the whole batch: embed the texts once
            logits = self.model.similarity(images, self.model.text_embeds(ids[0], None if mask is None else mask[0]))
        else:
            logits = torch.cat([self.model.similarity(images[i: i + 1], self.model.text_embeds(
                ids[i], None if mask is None else mask[i])) for i in range(ids.shape[0])])
        return {"logits": logits}  # (B, L)

    def postprocess(self, model_outputs):
        logits = model_outputs["logits"][0].float()
        scores = torch.sigmoid(logits) if self.model.scores == "sigmoid" else logits.softmax(-1)
        ranked = sorted(zip(scores.tolist(), model_outputs["candidate_labels"]), key=lambda pair: -pair[0])
        return [{"score": score, "label": label} for score, label in ranked]
