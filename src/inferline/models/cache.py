"""The KV cache of every decoder: one preallocated object per generation call, passed into `forward`."""

from __future__ import annotations

import torch


class KVCache:
    """Preallocated keys and values for every layer, written in place at positions (never grown).

    One object per generation call, passed into `forward`: modules hold no state between calls, so one
    model serves concurrent requests. `length` counts the positions already written; the model calls
    `advance(T)` once all layers have stored a step. Encoder-decoders keep cross-attention keys/values,
    computed once from the encoder output, in `cross`.
    """

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, max_length: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (num_layers, batch_size, num_kv_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self._layers = list(zip(self.keys.unbind(0), self.values.unbind(0)))  # per-layer views, made once
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self.probe = None  # called with each cross-attention's (layer, q, k, mask, scale) when set
        self.length = 0
        self.max_length = max_length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v (B, Hkv, T, D) after the cached positions; return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache holds {self.max_length} positions; {end} were needed.")
        keys, values = self._layers[layer]
        keys.narrow(2, self.length, k.shape[2]).copy_(k)
        values.narrow(2, self.length, v.shape[2]).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def advance(self, steps: int) -> None:
        self.length += steps

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Select batch rows (beam search): row i becomes old row index[i]; only written positions move.

        `cross=False` leaves the cross-attention keys/values as they are: right when rows only move among
        rows that share an encoder output (a beam search's beams of one input), and far cheaper.
        """
        for cache in (self.keys, self.values):
            for layer in cache:  # per layer: index_select over the leading dim beats one over dim 1
                filled = layer[:, :, :self.length]
                filled.copy_(filled.index_select(0, index))
        if cross:
            self.cross = [None if c is None else (c[0].index_select(0, index), c[1].index_select(0, index))
                          for c in self.cross]
