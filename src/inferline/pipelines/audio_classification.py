"""audio-classification: the labels of a clip, best first.

>>> classifier = pipeline("audio-classification", model="superb/wav2vec2-base-superb-ks")
>>> classifier(np.zeros(16000, dtype=np.float32), top_k=2)
[{'score': 0.9..., 'label': '_silence_'}, {'score': 0.0..., 'label': '_unknown_'}]
"""

from __future__ import annotations

import torch

from .audio import check_extractor, read_input
from .base import Pipeline

FUNCTIONS = ("softmax", "sigmoid", "none")
_UNSET = object()


class AudioClassificationPipeline(Pipeline):
    """Classify audio; `top_k` (None, the default = every label) and `function_to_apply` as transformers.

    A `top_k` given at construction holds for every call that does not pass its own (transformers 4.57.6
    resets it to every label at each call, contrary to its documented contract).
    """

    needs_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_extractor(self)

    def _sanitize_parameters(self, top_k=_UNSET, function_to_apply=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for audio-classification: {sorted(unknown)}. Accepted: top_k, "
                            f"function_to_apply.")
        postprocess = {}
        if top_k is not _UNSET:
            if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
                raise ValueError(f"`top_k` must be a positive integer or None (every label); got {top_k!r}.")
            postprocess["top_k"] = top_k
        if function_to_apply is not None:
            if function_to_apply not in FUNCTIONS:
                raise ValueError(f"`function_to_apply` must be one of {', '.join(FUNCTIONS)}; "
                                 f"got {function_to_apply!r}.")
            postprocess["function_to_apply"] = function_to_apply
        return {}, {}, postprocess

    def preprocess(self, inputs):
        audio = read_input(self, inputs)
        return self.feature_extractor(audio.array)

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs)}

    def postprocess(self, model_outputs, top_k=None, function_to_apply="softmax"):
        logits = model_outputs["logits"][0].float()
        if function_to_apply == "softmax":
            scores = logits.softmax(-1)
        elif function_to_apply == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = logits
        labels = self.model.config.id2label
        k = len(labels) if top_k is None else min(top_k, len(labels))
        values, ids = torch.topk(scores, k)
        return [{"score": s, "label": labels[i]} for s, i in zip(values.tolist(), ids.tolist())]
