"""Cross-attention weights of chosen heads, recorded during `generate` (Whisper's word timestamps).

Attention runs through SDPA, which gives no weights; when a `CrossAttentionProbe` is handed to `generate`,
the cache carries it and each cross-attention layer it names also computes the softmax weights of its
chosen heads, explicitly and only then. `weights(row)` assembles one output sequence's rows over every
step, following beam search's source rows when beams were used.
"""

from __future__ import annotations

import torch


class CrossAttentionProbe:
    """heads: (layer, head) pairs, in the order `weights` returns them (a checkpoint's `alignment_heads`)."""

    def __init__(self, heads):
        self.heads = [(int(layer), int(head)) for layer, head in heads]
        if not self.heads:
            raise ValueError("A cross-attention probe needs at least one (layer, head) pair.")
        self.by_layer: dict[int, list[int]] = {}
        for layer, head in self.heads:
            if head not in self.by_layer.setdefault(layer, []):
                self.by_layer[layer].append(head)
        self.records: dict[int, list[torch.Tensor]] = {layer: [] for layer in self.by_layer}
        self.sources: torch.Tensor | None = None  # (rows, generated) beam source row per token; set by beam search
        self._stacked: list[torch.Tensor] = []

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None,
                 scale: float | None) -> None:
        """q (N, H, T, D), k (Nkv, H, S, D) with Nkv dividing N (beams share their input's keys)."""
        heads = self.by_layer.get(layer)
        if heads is None:
            return
        index = torch.tensor(heads, device=q.device)
        q, k = q.index_select(1, index).float(), k.index_select(1, index).float()
        if k.shape[0] != q.shape[0]:
            k = k.repeat_interleave(q.shape[0] // k.shape[0], 0)
        scores = (q * (scale if scale is not None else q.shape[-1] ** -0.5)) @ k.transpose(-1, -2)  # (N, h, T, S)
        if mask is not None:
            scores = scores + mask.float().repeat_interleave(q.shape[0] // mask.shape[0], 0)
        self.records[layer].append(scores.softmax(-1))

    def _step(self, i: int) -> torch.Tensor:
        """(N, len(heads), T_i, S) of decode step i, heads in the given order."""
        while len(self._stacked) <= i:
            j = len(self._stacked)
            self._stacked.append(torch.stack([self.records[layer][j][:, self.by_layer[layer].index(head)]
                                              for layer, head in self.heads], 1))
        return self._stacked[i]

    @property
    def steps(self) -> int:
        return len(next(iter(self.records.values())))

    def weights(self, row: int, generated: int) -> torch.Tensor:
        """(len(heads), P + generated - 1, S): the weights of output row `row` for its prompt and its first
        `generated` - 1 tokens as inputs (the last generated token is never fed back)."""
        steps = range(min(generated, self.steps))
        if self.sources is None:
            parts = [self._step(i)[row] for i in steps]
        else:
            parts = [self._step(i)[int(self.sources[row, i])] for i in steps]
        return torch.cat(parts, 1)
