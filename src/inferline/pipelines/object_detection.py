"""object-detection: boxes, labels and scores for the objects in an image.

>>> detect = pipeline("object-detection", model="hustle/yolos-tiny")
>>> detect("street.jpg", threshold=0.9)
[{'score': 0.97..., 'label': 'car', 'box': {'xmin': 12, 'ymin': 40, 'xmax': 210, 'ymax': 180}}, ...]

Images of different sizes batch correctly (transformers 4.57.6 crashes): a batch holds only images whose
processed sizes are equal, since padding changes a detector's outputs; results equal unbatched ones.
"""

from __future__ import annotations

import torch

from .base import Pipeline
from .vision import ImagePipelineMixin, SameSizeBatches


def corners(boxes: torch.Tensor) -> torch.Tensor:
    """(…, 4) (cx, cy, w, h) → (xmin, ymin, xmax, ymax)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def checked_threshold(threshold):
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"`threshold` must be a number; got {type(threshold).__name__}: {threshold!r}.")
    return threshold


class ObjectDetectionPipeline(SameSizeBatches, ImagePipelineMixin, Pipeline):
    """`threshold` (0.5), `timeout`; boxes in the input image's pixels, as ints."""

    def _sanitize_parameters(self, threshold=None, timeout=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for object-detection: {sorted(unknown)}. Accepted: threshold, "
                            f"timeout.")
        return ({"timeout": timeout} if timeout is not None else {}), {}, \
            ({"threshold": checked_threshold(threshold)} if threshold is not None else {})

    def preprocess(self, image, timeout=None):
        inputs, picture = self.pixel_inputs(image, timeout)
        return {**inputs, "target_size": (picture.height, picture.width)}

    def _model_input_names(self):
        return tuple(self.model.input_names) + ("pixel_mask",)

    def _forward(self, model_inputs):
        inputs = self.model_dtype_inputs(model_inputs)
        out = self.model(**inputs)
        return {"logits": out.logits, "pred_boxes": out.pred_boxes}

    def postprocess(self, model_outputs, threshold=0.5):
        probs = model_outputs["logits"][0].float().softmax(-1)  # (Q, labels + 1)
        scores, labels = probs[:, :-1].max(-1)
        height, width = model_outputs["target_size"]
        boxes = corners(model_outputs["pred_boxes"][0].float()) * torch.tensor([width, height, width, height],
                                                                                dtype=torch.float32)
        keep = scores > threshold
        id2label = self.model.config.id2label
        return [{"score": s, "label": id2label[l], "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), b))}
                for s, l, b in zip(scores[keep].tolist(), labels[keep].tolist(), boxes[keep].int().tolist())]
