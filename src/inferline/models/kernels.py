"""Every use of a private torch op lives here, behind a self-check: `FastLinear` and `onednn_linear`.

torch's CPU `linear` calls MKL's sgemm; oneDNN's matmul on the same dense weights (the kernel torch.compile
emits for CPU linears) is faster for most shapes, most of all for the few rows of a decode step. torch
exposes it only as the private `torch.ops.mkldnn._linear_pointwise`, which may change or vanish in any
release. So it is used only after a check at first use: the op exists, accepts the call, and matches
`F.linear` within 1e-5 on a probe. Otherwise every FastLinear computes with `F.linear`; bench/ measures
the difference.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

_UNCHECKED = object()
_op: Callable | None | object = _UNCHECKED  # the checked op, None when it failed the check
_lock = threading.Lock()
# Below this many multiply-adds (rows x in x out) MKL's sgemm wins: it runs small products on the calling
# thread, while oneDNN wakes the whole thread pool (measured: 13x32x32 takes 4 us vs 13 us, 13x384x384 is even).
SMALL_PRODUCT = 1 << 21


def _find_op() -> Callable | None:
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def _probe(op: Callable) -> bool:
    """Whether `op` computes F.linear (with and without bias) on a small float32 probe."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 24, generator=generator)
    weight, bias = torch.randn(40, 24, generator=generator), torch.randn(40, generator=generator)
    with torch.inference_mode():
        for b in (bias, None):
            got = op(x, weight, b, "none", [], "")
            if not isinstance(got, torch.Tensor) or got.shape != (2, 5, 40) \
                    or not torch.allclose(got, F.linear(x, weight, b), rtol=0, atol=1e-5):
                return False
    return True


def onednn_linear() -> Callable | None:
    """oneDNN's linear `(x, weight, bias, "none", [], "")` if it passed the check (made once), else None."""
    global _op
    if _op is _UNCHECKED:
        with _lock:
            if _op is _UNCHECKED:
                op = _find_op()
                try:
                    ok = op is not None and _probe(op)
                except Exception as error:  # a changed signature or a missing kernel: use F.linear
                    logger.debug("torch.ops.mkldnn._linear_pointwise failed its probe: %s", error)
                    ok = False
                if not ok:
                    logger.info("oneDNN linear unavailable or inexact in this torch; FastLinear uses F.linear.")
                _op = op if ok else None
    return _op


class FastLinear(nn.Linear):
    """nn.Linear's parameters and maths, computed on the CPU by oneDNN's matmul when `onednn_linear()`
    passed its check (float32, no autograd); everything else takes nn.Linear's own path.

    Products under SMALL_PRODUCT multiply-adds stay on F.linear (a tiny model's whole forward). One row onto
    a vocabulary-sized output goes to MKL as weight @ x.T over two columns (one would take the slow gemv
    path). Results may differ from nn.Linear's in the last bits (summation order).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op = _op if _op is not _UNCHECKED else onednn_linear()
        if op is None or x.device.type != "cpu" or x.dtype != torch.float32 \
                or self.weight.dtype != torch.float32 or (torch.is_grad_enabled() and self.weight.requires_grad) \
                or x.numel() * self.out_features < SMALL_PRODUCT:
            return F.linear(x, self.weight, self.bias)
        if x.numel() == x.shape[-1] and self.out_features >= 16384:  # one row, a vocabulary: (V, C) @ (C, 2)
            row = x.reshape(1, -1)
            cols = torch.cat((row, row)).t()
            out = torch.mm(self.weight, cols) if self.bias is None else torch.addmm(self.bias[:, None], self.weight,
                                                                                   cols)
            return out[:, 0].contiguous().view(*x.shape[:-1], self.out_features)
        return op(x, self.weight, self.bias, "none", [], "")


def channels_last_convolutions(model: nn.Module) -> None:
    """Store every 2-D convolution's weight channels-last on the CPU: oneDNN then runs the convolutions in its
    blocked NHWC kernels (measured on DETR-R50 at 800x1066, 2 threads: the forward 1.33x faster; outputs within
    1e-6). Inputs stay as they are; only the weights' strides change (saving makes them contiguous again)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.weight.device.type == "cpu":
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
