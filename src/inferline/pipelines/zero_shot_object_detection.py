"""zero-shot-object-detection: find the things you name in an image, with an OWL-ViT-style model.

>>> detect = pipeline("zero-shot-object-detection", model="google/owlvit-base-patch32")
>>> detect("cats.jpg", candidate_labels=["cat", "remote control"])
[{'score': 0.28..., 'label': 'cat', 'box': {'xmin': 324, 'ymin': 20, 'xmax': 640, 'ymax': 373}}, ...]

Inputs as transformers takes them: an image and `candidate_labels`; a dict {"image", "candidate_labels"};
a list (or generator) of such dicts; a list of images with one label list per image. A string of labels is
split on commas as transformers splits it (not stripped: " dog" stays " dog"). Where transformers pairs a
list of images with a flat label list one label per image (and drops images past the labels), here the
labels are shared by every image, and per-image lists must match the images in number.

Each image runs the vision tower once and all its labels together (transformers runs the model once per
label); scores are independent sigmoids, so the results are the same.
"""

from __future__ import annotations

import torch

from .base import Pipeline
from .object_detection import checked_threshold, corners
from .vision import ImagePipelineMixin, SameSizeBatches, encode_texts

FORMS = ("an image with candidate_labels=[...], a dict {'image': ..., 'candidate_labels': [...]}, or a list or "
         "generator of such dicts")


class ZeroShotObjectDetectionPipeline(SameSizeBatches, ImagePipelineMixin, Pipeline):
    """`candidate_labels` (also `text_queries`), `threshold` (0.1), `top_k`, `timeout`."""

    needs_tokenizer = True

    def __call__(self, image=None, candidate_labels=None, **kwargs):
        if "text_queries" in kwargs:  # transformers' older name
            candidate_labels = kwargs.pop("text_queries")
        if "images" in kwargs:
            if image is not None:
                raise ValueError("Pass the images either positionally or as `images=`, not both.")
            image = kwargs.pop("images")
        if isinstance(image, (list, tuple)) and image and not any(isinstance(x, dict) for x in image) \
                and _is_list_of_lists(candidate_labels):  # one label list per image
            if len(candidate_labels) != len(image):
                raise ValueError(f"`candidate_labels` has {len(candidate_labels)} label lists for {len(image)} "
                                 f"images; give one list per image, or one list for all of them.")
            return super().__call__([{"image": x, "candidate_labels": labels}
                                     for x, labels in zip(image, candidate_labels)], **kwargs)
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        return super().__call__(image, **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, threshold=None, top_k=None, timeout=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for zero-shot-object-detection: {sorted(unknown)}. Accepted: "
                            f"candidate_labels, threshold, top_k, timeout.")
        pre, post = {}, {}
        if candidate_labels is not None:
            pre["candidate_labels"] = _labels(candidate_labels)
        if timeout is not None:
            pre["timeout"] = timeout
        if threshold is not None:
            post["threshold"] = checked_threshold(threshold)
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
                raise ValueError(f"`top_k` must be a non-negative int (0 or None: every detection); got {top_k!r}.")
            post["top_k"] = top_k
        return pre, {}, post

    def preprocess(self, item, candidate_labels=None, timeout=None):
        """An image (with the call's candidate_labels) or a dict {"image", "candidate_labels"} (its own win)."""
        if isinstance(item, dict):
            if "image" not in item:
                raise ValueError(f"zero-shot-object-detection takes {FORMS}; got a dict with keys {sorted(item)}.")
            image, labels = item["image"], item.get("candidate_labels", candidate_labels)
        else:
            image, labels = item, candidate_labels
        labels = _labels(labels)
        inputs, picture = self.pixel_inputs(image, timeout)
        try:
            ids, mask = encode_texts(self.tokenizer, labels, **self.model.text_padding)
        except ValueError as error:
            raise ValueError(f"`candidate_labels`: {error}") from None
        return {**inputs, "input_ids": ids, "attention_mask": mask, "candidate_labels": labels,
                "target_size": (picture.height, picture.width)}

    def _forward(self, model_inputs):
        pixels = self.model_dtype_inputs({"pixel_values": model_inputs["pixel_values"]})["pixel_values"]
        ids, mask = model_inputs["input_ids"], model_inputs["attention_mask"]  # (B, L, T); padded queries: mask 0
        found = self.model.image_detections(pixels)
        B, L, T = ids.shape
        real = mask[:, :, 0].bool()  # (B, L)
        if bool((ids == ids[:1]).all()) and bool((mask == mask[:1]).all()):  # one label set: embed it once
            queries = self.model.query_embeds(ids[0][real[0]], mask[0][real[0]])
            queries = queries.new_zeros(L, queries.shape[-1]).index_copy(0, real[0].nonzero()[:, 0], queries)
            queries = queries.expand(B, L, -1)
        else:
            rows = real.reshape(-1)
            embedded = self.model.query_embeds(ids.reshape(-1, T)[rows], mask.reshape(-1, T)[rows])
            queries = embedded.new_zeros(B * L, embedded.shape[-1]).index_copy(0, rows.nonzero()[:, 0], embedded)
            queries = queries.reshape(B, L, -1)
        query_mask = real & (ids[:, :, 0] > 0)  # transformers masks a query whose first token id is 0
        logits = self.model.class_logits(found.class_embeds, queries, query_mask)
        return {"logits": logits, "pred_boxes": found.pred_boxes}  # (B, P, L), (B, P, 4)

    def postprocess(self, model_outputs, threshold=0.1, top_k=None):
        labels = model_outputs["candidate_labels"]
        scores = model_outputs["logits"][0, :, : len(labels)].float().sigmoid()  # (P, L)
        height, width = model_outputs["target_size"]
        boxes = corners(model_outputs["pred_boxes"][0].float()) * torch.tensor([width, height, width, height],
                                                                                dtype=torch.float32)
        boxes = boxes.int().tolist()
        results = []
        for j, label in enumerate(labels):  # label by label, patches in order, as transformers lists them
            column = scores[:, j]
            kept = ((column > threshold) & (column != 0)).nonzero()[:, 0]  # a masked query scores exactly 0
            for p, score in zip(kept.tolist(), column[kept].tolist()):
                results.append({"score": score, "label": label,
                                "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), boxes[p]))})
        results = sorted(results, key=lambda r: r["score"], reverse=True)
        return results[:top_k] if top_k else results


def _labels(labels) -> list[str]:
    if labels is None:
        raise ValueError("zero-shot-object-detection needs `candidate_labels`, e.g. candidate_labels=['cat', 'dog'].")
    if isinstance(labels, str):
        labels = labels.split(",")  # as transformers: split on commas, not stripped
    if not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
        raise TypeError(f"`candidate_labels` must be a list of strings or a comma-separated string; got {labels!r}.")
    if not labels:
        raise ValueError("`candidate_labels` is empty; name at least one thing to find.")
    return list(labels)


def _is_list_of_lists(labels) -> bool:
    return isinstance(labels, (list, tuple)) and bool(labels) and all(isinstance(x, (list, tuple)) for x in labels)
