"""image-segmentation: labelled masks (and scores) for the regions of an image.

>>> segment = pipeline("image-segmentation", model="facebook/detr-resnet-50-panoptic")
>>> [(s["label"], round(s["score"], 2), s["mask"].size) for s in segment("cats.png")]
[('cat', 0.99, (640, 480)), ('couch', 0.98, (640, 480)), ...]

Models declare the subtasks their outputs support (`segmentation_subtasks`): mask-classification models
(DETR: class logits + a mask per query) give panoptic, instance and semantic maps; per-pixel models
(SegFormer) give semantic ones. Unset, `subtask` is tried in transformers' order: panoptic, instance,
semantic. Masks are "L" images (0 / 255) of the input's size; semantic segments have `score` None.
As for object-detection, a batch holds only images of one processed size: padding changes DETR's masks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import Pipeline
from .vision import ImagePipelineMixin, SameSizeBatches

SUBTASKS = ("panoptic", "instance", "semantic")  # transformers' order when `subtask` is unset


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) → (N, *size), bilinear (transformers' post-processing resize)."""
    return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]


def segments(mask_probs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, size: tuple[int, int],
             mask_threshold: float, overlap_threshold: float) -> list[tuple[int, float, torch.Tensor]]:
    """Kept queries' mask probabilities (K, h, w), scores and labels → (label, score, mask) per segment.

    Each pixel goes to the query with the highest score-weighted probability; a query keeps its segment when
    it wins some pixels, has some of its own above `mask_threshold`, and wins more than `overlap_threshold`
    of those (transformers' compute_segments, with no labels fused).
    """
    probs = _resize(mask_probs, size) * scores[:, None, None]
    owner = probs.argmax(0)  # (H, W)
    found = []
    for k in range(labels.shape[0]):
        mask = owner == k
        area, own = mask.sum(), (probs[k] >= mask_threshold).sum()
        if area > 0 and own > 0 and (area / own).item() > overlap_threshold:  # a float32 ratio, as transformers
            found.append((int(labels[k]), round(float(scores[k]), 6), mask))
    return found


class ImageSegmentationPipeline(SameSizeBatches, ImagePipelineMixin, Pipeline):
    """`subtask` (panoptic / instance / semantic; unset: the first the model supports), `threshold` (0.9),
    `mask_threshold` (0.5), `overlap_mask_area_threshold` (0.5), `timeout`."""

    def _sanitize_parameters(self, subtask=None, threshold=None, mask_threshold=None,
                             overlap_mask_area_threshold=None, timeout=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for image-segmentation: {sorted(unknown)}. Accepted: subtask, "
                            f"threshold, mask_threshold, overlap_mask_area_threshold, timeout.")
        post = {}
        if subtask is not None:
            self._subtask(subtask)
            post["subtask"] = subtask
        for name, value in (("threshold", threshold), ("mask_threshold", mask_threshold),
                            ("overlap_mask_area_threshold", overlap_mask_area_threshold)):
            if value is not None:
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise TypeError(f"`{name}` must be a number; got {type(value).__name__}: {value!r}.")
                post[name] = value
        return ({"timeout": timeout} if timeout is not None else {}), {}, post

    def _subtask(self, subtask: str | None) -> str:
        supported = getattr(self.model, "segmentation_subtasks", ())
        if subtask is not None and subtask not in SUBTASKS:
            raise ValueError(f"`subtask` must be one of {', '.join(SUBTASKS)} (or unset); got {subtask!r}.")
        for name in SUBTASKS:
            if subtask in (name, None) and name in supported:
                return name
        raise ValueError(f"Subtask {subtask!r} is not supported by {type(self.model).__name__}; it supports: "
                         f"{', '.join(supported) or 'none'}.")

    def preprocess(self, image, timeout=None):
        inputs, picture = self.pixel_inputs(image, timeout)
        return {**inputs, "target_size": (picture.height, picture.width)}

    def _forward(self, model_inputs):
        return self.model(**self.model_dtype_inputs(model_inputs))._asdict()

    def postprocess(self, model_outputs, subtask=None, threshold=0.9, mask_threshold=0.5,
                    overlap_mask_area_threshold=0.5):
        subtask, size = self._subtask(subtask), tuple(model_outputs["target_size"])
        id2label = self.model.config.id2label
        if subtask == "semantic":
            classes = self._semantic(model_outputs, size).numpy()
            return [{"score": None, "label": id2label[int(label)], "mask": _mask(classes == label)}
                    for label in np.unique(classes)]
        logits = model_outputs["logits"][0].float()  # (Q, labels + 1)
        scores, labels = logits.softmax(-1).max(-1)
        keep = (labels != logits.shape[-1] - 1) & (scores > threshold)
        probs = model_outputs["pred_masks"][0].float().sigmoid()[keep]  # (K, h, w)
        if probs.shape[0] == 0:
            return []
        found = segments(probs, scores[keep], labels[keep], size, mask_threshold, overlap_mask_area_threshold)
        return [{"score": score, "label": id2label[label], "mask": _mask(mask.numpy())} for label, score, mask in found]

    @staticmethod
    def _semantic(outputs: dict, size: tuple[int, int]) -> torch.Tensor:
        """(H, W) class ids: per-pixel logits resized, or each class's score-weighted masks summed over queries."""
        if "pred_masks" in outputs:  # mask classification: (Q, C) class probabilities x (Q, h, w) masks
            classes = outputs["logits"][0].float().softmax(-1)[:, :-1]
            maps = torch.einsum("qc,qhw->chw", classes, outputs["pred_masks"][0].float().sigmoid())
        else:
            maps = outputs["logits"][0].float()  # (C, h, w)
        return _resize(maps, size).argmax(0)


def _mask(mask: np.ndarray):
    """(H, W) bool → "L" image, 255 inside."""
    from PIL import Image

    return Image.fromarray(mask.astype(np.uint8) * 255)
