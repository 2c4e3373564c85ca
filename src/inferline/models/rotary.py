"""Rotary position embeddings (rotate-half layout) with every rope_scaling type transformers has: default,
linear, dynamic NTK, YaRN and Llama 3. `Rotary` makes the (cos, sin) pair; `apply_rotary` turns q or k."""

from __future__ import annotations

import math

import torch
from torch import nn


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half layout) with transformers' rope_scaling types.

    `rotary_dim` may be below head_dim (partial rotary). Frequencies are computed on the fly from
    positions, so there is no buffer to load and nothing to mis-place on the meta device.
    """

    def __init__(self, rotary_dim: int, base: float = 10000.0, scaling: dict | None = None,
                 max_position_embeddings: int = 2048):
        super().__init__()
        self.rotary_dim = rotary_dim
        self.base = base
        self.scaling = dict(scaling or {})
        self.max_position_embeddings = max_position_embeddings
        self.original_max = self.scaling.get("original_max_position_embeddings", max_position_embeddings)
        kind = self.scaling.get("rope_type", self.scaling.get("type", "default"))
        self.kind = kind
        if kind not in ("default", "linear", "llama3", "dynamic", "yarn", "longrope"):
            raise ValueError(f"Unsupported rope_scaling type {kind!r}; supported: default, linear, llama3, "
                             f"dynamic, yarn, longrope.")

    def inv_freq(self, seq_len: int, device) -> tuple[torch.Tensor, float]:
        """(rotary_dim/2,) inverse frequencies and the attention scaling factor for this length."""
        dim, base, kind, s = self.rotary_dim, self.base, self.kind, self.scaling
        exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
        if kind == "dynamic" and seq_len > self.max_position_embeddings:
            factor = s["factor"]
            base = base * ((factor * seq_len / self.max_position_embeddings) - (factor - 1)) ** (dim / (dim - 2))
        inv = 1.0 / (base ** exponents)
        scale = 1.0
        if kind == "linear":
            inv = inv / s["factor"]
        elif kind == "llama3":
            inv = _llama3_scale(inv, s)
        elif kind == "yarn":
            inv, scale = _yarn(inv, dim, base, s, self.original_max, device)
        elif kind == "longrope":
            factors = s["long_factor"] if seq_len > self.original_max else s["short_factor"]
            inv = inv / torch.tensor(factors, dtype=torch.float32, device=device)
            factor = s.get("factor", self.max_position_embeddings / self.original_max)
            scale = s.get("attention_factor") or (
                1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(self.original_max)))
        return inv, scale

    def forward(self, positions: torch.Tensor, dtype: torch.dtype, seq_len: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) positions → cos and signed sin (sin with its first half negated, as `apply_rotary` takes it),
        each of shape (B, 1, T, rotary_dim)."""
        seq_len = seq_len if seq_len is not None else int(positions.max()) + 1
        inv, scale = self.inv_freq(seq_len, positions.device)
        angles = positions[..., None].float() * inv  # (B, T, rotary_dim/2)
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = (emb.cos() * scale).to(dtype)[:, None], (emb.sin() * scale).to(dtype)[:, None]
        half = sin.shape[-1] // 2
        return cos, torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first rotary_dim channels of x (B, H, T, D); the rest pass through (partial rotary).

    transformers' x * cos + rotate_half(x) * sin, bit for bit, as x * cos + roll(x) * signed_sin: the
    negation moved into the sine (made once per step), so each call is four operations instead of seven.
    """
    d = cos.shape[-1]
    if d == x.shape[-1]:
        return x * cos + x.roll(d // 2, -1) * signed_sin
    rotated, rest = x[..., :d], x[..., d:]
    return torch.cat((rotated * cos + rotated.roll(d // 2, -1) * signed_sin, rest), dim=-1)


def _llama3_scale(inv: torch.Tensor, s: dict) -> torch.Tensor:
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old = s["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn(inv: torch.Tensor, dim: int, base: float, s: dict, original_max: int, device) -> tuple[torch.Tensor, float]:
    factor = s["factor"]
    beta_fast, beta_slow = s.get("beta_fast") or 32, s.get("beta_slow") or 1

    def get_mscale(m=1.0):
        return 0.1 * m * math.log(factor) + 1.0 if factor > 1 else 1.0

    mscale = s.get("attention_factor")
    if mscale is None:  # DeepSeek-style mscale / mscale_all_dim, else the paper's factor
        mscale = get_mscale(s["mscale"]) / get_mscale(s["mscale_all_dim"]) \
            if s.get("mscale") and s.get("mscale_all_dim") else get_mscale()

    def correction_dim(rotations):
        return (dim * math.log(original_max / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device=device) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp
    return inv / factor * (1 - extrapolation) + inv * extrapolation, mscale
