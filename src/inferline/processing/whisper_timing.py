"""Whisper token timestamps from cross-attention (transformers 4.57.6 `_extract_token_timestamps`).

The alignment heads' weights over the tokens fed after the prompt, cropped to the audio's encoder
positions, are standardised over tokens, median-filtered along time and averaged over heads; dynamic
time warping then maps each token to the encoder position where the path first reaches it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over windows of `width` (odd) along the last dim of a 3-D tensor, edges reflected."""
    if width <= 0 or width % 2 != 1:
        raise ValueError(f"The median filter width must be a positive odd number; got {width}.")
    half = width // 2
    if x.shape[-1] <= half:
        return x
    x = F.pad(x[None], (half, half, 0, 0), mode="reflect")[0]
    return x.unfold(-1, width, 1).sort()[0][..., half]


def dtw_path(cost_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest monotonic path through (tokens, frames) costs → (token index, frame index) per step.

    Filled by anti-diagonals (each cell needs its left, upper and upper-left neighbours, all on the two
    previous diagonals); costs are kept float32 and ties resolve as transformers' loop does.
    """
    rows, cols = cost_matrix.shape
    cost = np.full((rows + 1, cols + 1), np.inf, dtype=np.float32)
    trace = np.full((rows + 1, cols + 1), -1, dtype=np.int8)
    cost[0, 0] = 0
    for d in range(2, rows + cols + 1):
        i = np.arange(max(1, d - cols), min(rows, d - 1) + 1)
        j = d - i
        c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        pick0 = (c0 < c1) & (c0 < c2)
        pick1 = ~pick0 & (c1 < c0) & (c1 < c2)
        best = np.where(pick0, c0, np.where(pick1, c1, c2))
        cost[i, j] = cost_matrix[i - 1, j - 1] + best
        trace[i, j] = np.where(pick0, 0, np.where(pick1, 1, 2))
    trace[0, :], trace[:, 0] = 2, 1
    i, j = rows, cols
    text, time = [], []
    while i > 0 or j > 0:
        text.append(i - 1)
        time.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(text[::-1]), np.array(time[::-1])


def token_timestamps(weights: torch.Tensor, prompt_length: int, generated: int, num_frames: int | None,
                     filter_width: int, time_precision: float = 0.02) -> torch.Tensor:
    """weights (heads, prompt_length + generated - 1, S) → (generated,) float32 seconds per generated token.

    Rows of the prompt are dropped; each token gets the time where the path enters the row of it as input,
    and the last token (never fed back: no weights) repeats the one before. num_frames: the audio's mel
    frames (two per encoder position); None keeps every position.
    """
    if num_frames is not None:
        weights = weights[..., : num_frames // 2]
    weights = weights[:, prompt_length:].float()
    if weights.shape[1] == 0:
        return torch.zeros(generated, dtype=torch.float32)
    std = torch.std(weights, dim=-2, keepdim=True, unbiased=False)
    mean = torch.mean(weights, dim=-2, keepdim=True)
    matrix = median_filter((weights - mean) / std, filter_width).mean(0)
    text, time = dtw_path(-matrix.double().numpy())
    jumps = np.pad(np.diff(text), (1, 0), constant_values=1).astype(bool)
    jump_times = time[jumps] * time_precision
    return torch.cat([torch.tensor(jump_times), torch.tensor(jump_times[-1:])]).float()[:generated]
