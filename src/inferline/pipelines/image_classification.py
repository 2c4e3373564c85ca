"""image-classification: the top labels and scores for an image.

>>> classify = pipeline("image-classification", model="google/vit-base-patch16-224")
>>> classify("cat.png", top_k=2)
[{'label': 'tabby, tabby cat', 'score': 0.94...}, {'label': 'tiger cat', 'score': 0.04...}]
"""

from __future__ import annotations

import torch

from .base import Pipeline
from .text_classification import apply_function, check_function
from .vision import ImagePipelineMixin

FUNCTIONS = ("sigmoid", "softmax", "none")


def default_function(config) -> str:
    """transformers' image-classification choice: multi-label or one label → sigmoid, else softmax."""
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    if config.problem_type == "single_label_classification" or config.num_labels > 1:
        return "softmax"
    return str(config.raw.get("function_to_apply", "none"))


class ImageClassificationPipeline(ImagePipelineMixin, Pipeline):
    """Classify images; `top_k` (default 5, capped at the number of labels), `function_to_apply`, `timeout`."""

    def _sanitize_parameters(self, top_k=None, function_to_apply=None, timeout=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for image-classification: {sorted(unknown)}. Accepted: top_k, "
                            f"function_to_apply, timeout.")
        post = {}
        if top_k is not None:
            if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
                raise ValueError(f"`top_k` must be a positive integer; got {top_k!r}.")
            post["top_k"] = top_k
        if function_to_apply is not None:
            post["function_to_apply"] = check_function(function_to_apply, FUNCTIONS)
        return ({"timeout": timeout} if timeout is not None else {}), {}, post

    def preprocess(self, image, timeout=None):
        return self.pixel_inputs(image, timeout)[0]

    def _forward(self, model_inputs):
        return {"logits": self.model(**self.model_dtype_inputs(model_inputs))}

    def postprocess(self, model_outputs, function_to_apply=None, top_k=5):
        config = self.model.config
        scores = apply_function(model_outputs["logits"][0].float(), function_to_apply or default_function(config))
        top_k = min(top_k, config.num_labels)
        best = torch.argsort(scores, descending=True, stable=True)[:top_k].tolist()
        return [{"label": config.id2label[i], "score": scores[i].item()} for i in best]
