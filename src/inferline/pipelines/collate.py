"""Batch assembly: pad each key to the batch's longest, and split model outputs back per item."""

from __future__ import annotations

from typing import Any, Mapping

import torch

# Keys whose padding is 1 rather than 0 (transformers' pad_collate_fn convention).
PAD_WITH_ONE = ("p_mask", "special_tokens_mask")


def collate(items: list[Mapping[str, torch.Tensor]], pad_values: Mapping[str, Any], padding_side: str = "right"
            ) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Stack per-item tensors into a batch. 1-D sequences are padded along their length to the
    batch's longest; equal-shaped tensors are stacked. Returns (batch, each item's sequence length)."""
    if len(items) == 1:  # one request: views with a batch axis, nothing to pad
        return {key: t.unsqueeze(0) for key, t in items[0].items()}, [_length(items[0])]
    keys = items[0].keys()
    lengths = [_length(item) for item in items]
    batch = {}
    for key in keys:
        tensors = [item[key] for item in items]
        if all(t.shape == tensors[0].shape for t in tensors):
            batch[key] = torch.stack(tensors)
            continue
        longest = max(t.shape[0] for t in tensors)
        pad = pad_values.get(key, 1 if key in PAD_WITH_ONE else 0)
        out = tensors[0].new_full((len(tensors), longest, *tensors[0].shape[1:]), pad)
        for row, t in enumerate(tensors):
            if padding_side == "left":
                out[row, longest - t.shape[0]:] = t
            else:
                out[row, : t.shape[0]] = t
        batch[key] = out
    return batch, lengths


def uncollate(outputs: Mapping[str, Any], lengths: list[int], per_token_keys: tuple[str, ...],
              padding_side: str = "right") -> list[dict[str, Any]]:
    """Split batched outputs into one dict per item; keys in `per_token_keys` have their sequence
    axis (dim 1) cut back to the item's own length, so batched results equal unbatched ones."""
    items = []
    for row, length in enumerate(lengths):
        item = {}
        for key, value in outputs.items():
            if not isinstance(value, torch.Tensor):
                item[key] = value[row] if isinstance(value, (list, tuple)) else value
                continue
            one = value[row: row + 1]  # keep a batch axis of 1, as transformers' unbatching does
            if key in per_token_keys and one.dim() >= 2:
                one = one[:, one.shape[1] - length:] if padding_side == "left" else one[:, :length]
            item[key] = one
        items.append(item)
    return items


def _length(item: Mapping[str, torch.Tensor]) -> int:
    ids = item.get("input_ids")
    if ids is not None:
        return int(ids.shape[-1])
    first = next(iter(item.values()))
    return int(first.shape[0]) if first.dim() else 1
