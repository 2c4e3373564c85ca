"""What the image pipelines share: turning one input into processed pixels, the `images=` keyword, batches
of one processed size, and tokenising a list of texts for a two-tower model."""

from __future__ import annotations

from typing import Any

import torch

from ..processing.image import load_image


class ImagePipelineMixin:
    """For pipelines whose inputs are images: no tokenizer needed unless the task says so."""

    needs_tokenizer = False

    def __call__(self, inputs=None, *args, **kwargs):
        if "images" in kwargs:  # transformers' older keyword
            if inputs is not None:
                raise ValueError("Pass the images either positionally or as `images=`, not both.")
            inputs = kwargs.pop("images")
        return super().__call__(inputs, *args, **kwargs)

    def pixel_inputs(self, image: Any, timeout: float | None = None, **processor_options) -> tuple[dict, Any]:
        """One image input → ({"pixel_values": (3, H, W), ...}, the RGB PIL image)."""
        if self.image_processor is None:
            raise ValueError(f"The {self.task} pipeline needs an image processor: the checkpoint has no "
                             f"preprocessor_config.json; pass `image_processor=`.")
        picture = load_image(image, timeout=timeout)
        processor = self.image_processor.with_options(**processor_options) if processor_options else \
            self.image_processor
        return processor.preprocess(picture), picture

    def model_dtype_inputs(self, model_inputs: dict) -> dict:
        dtype = self.dtype
        return {k: (v.to(dtype) if v.is_floating_point() and dtype is not None else v) for k, v in model_inputs.items()}


class SameSizeBatches:
    """Batch only images of one processed size: padding would change a dense model's outputs (detections,
    masks, depth), so images of different sizes go in different batches and results equal unbatched ones. With
    `in_order_batches` (a pipeline's attribute or property) only runs of neighbours share a batch, in input order."""

    in_order_batches = False

    def _forward_window(self, pieces, batch_size, fwd):
        groups: dict[tuple, list[int]] = {}
        for i, piece in enumerate(pieces):
            shape = tuple(piece["pixel_values"].shape)
            if self.in_order_batches:  # runs of one size, keyed by their number
                last = groups.get(("run", len(groups) - 1))
                if last is not None and tuple(pieces[last[-1]]["pixel_values"].shape) == shape:
                    last.append(i)
                    continue
                shape = ("run", len(groups))
            groups.setdefault(shape, []).append(i)
        results = [None] * len(pieces)
        for rows in groups.values():
            for i, out in zip(rows, super()._forward_window([pieces[i] for i in rows], batch_size, fwd)):
                results[i] = out
        return results


def encode_texts(tokenizer, texts: list[str], padding=True, max_length=None, truncation=False,
                 pad_id: int | None = None):
    """Texts → (input_ids, attention_mask), each (L, T): padded to the longest, or to `max_length` with
    padding="max_length"; `pad_id` defaults to the tokenizer's."""
    rows = [e[0].ids for e in tokenizer.encode_batch(texts, truncation=truncation, max_length=max_length)]
    width = max_length if padding == "max_length" and max_length else max(map(len, rows))
    pad = pad_id if pad_id is not None else (tokenizer.pad_token_id or 0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row) > width:
            raise ValueError(f"The text {texts[i]!r} is {len(row)} tokens long; this model takes at most {width}.")
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row, dtype=torch.long), 1
    return ids, mask  # (L, T)
