"""Every use of a private torch op lives here, behind a self-check: `FastLinear` / `onednn_linear` (and, for
few rows, our own kernel: `native_gemm`),
`conv2d` / `onednn_conv` (a convolution with its bias, residual add and ReLU in one oneDNN call) and
`post_norm_layer` (a whole BERT block in one aten call, for small work); and `one_thread`, which talks to
the OpenMP and MKL runtimes torch ships with.

torch's CPU `linear` calls MKL's sgemm; oneDNN's matmul on the same dense weights (the kernel torch.compile
emits for CPU linears) is faster for most shapes, most of all for the few rows of a decode step. torch
exposes it only as the private `torch.ops.mkldnn._linear_pointwise`, which may change or vanish in any
release. So it is used only after a check at first use: the op exists, accepts the call, and matches
`F.linear` within 1e-5 on a probe. Otherwise every FastLinear computes with `F.linear`; bench/ measures
the difference.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import native_gemm

logger = logging.getLogger(__name__)

_UNCHECKED = object()
_op: Callable | None | object = _UNCHECKED  # the checked op, None when it failed the check
_lock = threading.Lock()
# Below this many multiply-adds (rows x in x out) MKL's sgemm wins: it runs small products on the calling
# thread, while oneDNN wakes the whole thread pool (measured: 13x32x32 takes 4 us vs 13 us, 13x384x384 is even).
SMALL_PRODUCT = 1 << 21
# Products of at most `native_gemm.max_rows()` rows (96 at its AVX2 width, 64 at AVX-512's: measured there) go to
# `native_gemm` where it is available, and of at least this many multiply-adds, where it beats MKL's sgemm too
# (10x384x384: 38 vs 76 us; 10x128x128: 15 vs 20 us; 13x32x32: 12.5 vs 11 us), which keeps the products under
# SMALL_PRODUCT otherwise.
NATIVE_PRODUCT = 1 << 17
# One row (a decode step) onto a weight of at least this many values goes to `single_row_linear` (below it,
# e.g. 192x576, both kernels take the same time).
SINGLE_ROW_PRODUCT = 1 << 17
ROW_TRIALS = 8  # timed calls per kernel before `single_row_linear` settles on one for a weight shape
_row_choice: dict[tuple[int, int, int], bool] = {}  # (out, in, threads) → the two-column gemm is faster
_row_trials: dict[tuple[int, int, int], list] = {}


_pack: Callable | None = None  # oneDNN's weight reorder into its blocked layout, when it passed the check too
_gelu_epilogue = [False]  # whether the op's GELU epilogue passed the check too


def _find_op() -> Callable | None:
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def _matches(got, want: torch.Tensor, atol: float = 1e-5) -> bool:
    """Whether a private op's probe output `got` is a tensor of `want`'s shape within `atol` of it."""
    return isinstance(got, torch.Tensor) and got.shape == want.shape and torch.allclose(got, want, rtol=0, atol=atol)


def _probe_pack(op: Callable, pack: Callable) -> bool:
    """Whether `op` on a weight reordered by `pack` computes F.linear on a small float32 probe."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 24, generator=generator)
    weight, bias = torch.randn(40, 24, generator=generator), torch.randn(40, generator=generator)
    with torch.inference_mode():
        got = op(x, pack(weight), bias, "none", [], "")
    return _matches(got, F.linear(x, weight, bias))


def _probe(op: Callable) -> bool:
    """Whether `op` computes F.linear (with and without bias) on a small float32 probe."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 24, generator=generator)
    weight, bias = torch.randn(40, 24, generator=generator), torch.randn(40, generator=generator)
    with torch.inference_mode():
        for b in (bias, None):
            got = op(x, weight, b, "none", [], "")
            if not _matches(got, F.linear(x, weight, b)):
                return False
    return True


def _probe_gelu(op: Callable) -> bool:
    """Whether `op` with its GELU epilogue (erf and tanh) computes F.gelu(F.linear) on a small float32 probe."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 24, generator=generator)
    weight, bias = torch.randn(40, 24, generator=generator) * 0.2, torch.randn(40, generator=generator)
    with torch.inference_mode():
        for algorithm in ("none", "tanh"):
            got = op(x, weight, bias, "gelu", [], algorithm)
            want = F.gelu(F.linear(x, weight, bias), approximate=algorithm)
            if not _matches(got, want):
                return False
    return True


def _checked(op: Callable | None, probe: Callable[[Callable], bool], name: str, fallback: str) -> Callable | None:
    """`op` if it exists and `probe(op)` holds, else None (logged): the one self-check every private op passes."""
    try:
        ok = op is not None and probe(op)
    except Exception as error:  # a changed signature or a missing kernel: use the public path
        logger.debug("torch.ops.%s failed its probe: %s", name, error)
        ok = False
    if not ok:
        logger.info("torch.ops.%s unavailable or inexact in this torch; %s.", name, fallback)
    return op if ok else None


def onednn_linear() -> Callable | None:
    """oneDNN's linear `(x, weight, bias, "none", [], "")` if it passed the check (made once), else None."""
    global _op, _pack
    if _op is _UNCHECKED:
        with _lock:
            if _op is _UNCHECKED:
                op = _checked(_find_op(), _probe, "mkldnn._linear_pointwise", "FastLinear uses F.linear")
                if op is not None:  # plain weights still work when the reorder is missing or inexact
                    _pack = _checked(getattr(torch.ops.mkldnn, "_reorder_linear_weight", None),
                                     lambda pack: _probe_pack(op, pack), "mkldnn._reorder_linear_weight",
                                     "oneDNN reads the plain weights")
                    _gelu_epilogue[0] = _checked(op, _probe_gelu, "mkldnn._linear_pointwise (gelu)",
                                                 "GELU runs after the product") is not None
                _op = op
    return _op


def derived(owner: nn.Module, name: str, tensors: Sequence[torch.Tensor], make: Callable[[], Any]) -> Any:
    """`make()`, a value computed from `tensors` (a packed or concatenated copy of weights), kept in `owner`'s
    __dict__ under `name` (outside its state dict) and made again when one of them was replaced, changed in
    place or given new .data. Two threads may both make it once: the same result."""
    now = [(t._version, t.data_ptr()) for t in tensors]
    cached = owner.__dict__.get(name)
    if cached is None or cached[1] != now or len(cached[0]) != len(tensors) \
            or any(a is not b for a, b in zip(cached[0], tensors)):
        with torch.no_grad():
            cached = (tuple(tensors), now, make())
        owner.__dict__[name] = cached
    return cached[2]


class FastLinear(nn.Linear):
    """nn.Linear's parameters and maths, computed on the CPU by oneDNN's matmul when `onednn_linear()`
    passed its check (float32, no autograd); everything else takes nn.Linear's own path.

    oneDNN reads the weight in its own blocked layout, reordered once (`_packed`). One row (a decode step)
    onto a weight of SINGLE_ROW_PRODUCT values or more goes to `single_row_linear` (MKL's gemv or its gemm
    over two columns, whichever measures faster); up to `native_gemm.max_rows()` rows, from NATIVE_PRODUCT
    multiply-adds, go to our own kernel (`native_gemm`, packed likewise); other products under
    SMALL_PRODUCT multiply-adds stay on F.linear (a tiny model's whole forward). Results may differ from
    nn.Linear's in the last bits (summation order).
    """

    def forward(self, x: torch.Tensor, gelu: str | None = None) -> torch.Tensor:
        """gelu: "none" (erf) or "tanh" returns F.gelu(linear(x), approximate=gelu), in oneDNN's epilogue where
        the product goes to oneDNN (bias + GELU ride on its output instead of another pass over it)."""
        weight = self.weight
        product = x.numel() * self.out_features
        if product < NATIVE_PRODUCT and weight.numel() < SINGLE_ROW_PRODUCT:
            return _then_gelu(F.linear(x, weight, self.bias), gelu)  # first: the cheapest test, a tiny model's
        if not x.is_cpu or x.dtype != torch.float32 or weight.dtype != torch.float32 \
                or (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad)):
            return _then_gelu(F.linear(x, weight, self.bias), gelu)
        if x.numel() == x.shape[-1] and weight.numel() >= SINGLE_ROW_PRODUCT:  # a decode step's one row
            return _then_gelu(single_row_linear(x, weight, self.bias), gelu)
        if x.numel() <= native_gemm.max_rows() * x.shape[-1]:
            return native_gemm.linear(x, native_packed(self), gelu)
        op = _op if _op is not _UNCHECKED else onednn_linear()
        if op is None or product < SMALL_PRODUCT:
            return _then_gelu(F.linear(x, weight, self.bias), gelu)
        if gelu is not None and _gelu_epilogue[0]:
            return op(x, self._packed(weight), self.bias, "gelu", [], gelu)
        return _then_gelu(op(x, self._packed(weight), self.bias, "none", [], ""), gelu)

    def _packed(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight in oneDNN's blocked layout (made at the first call, again if the weight changed; a copy
        beside the parameter): 1.1-1.5x the throughput of the plain layout at 16-140 rows, K/N 384/1536."""
        if _pack is None:
            return weight
        return derived(self, "_packed_weight", (weight,), lambda: _pack(weight.detach()))


def native_packed(linear: nn.Linear) -> tuple:
    """`linear`'s weight and bias in `native_gemm`'s layout, packed once beside the parameters (again when one
    changed). Needs `native_gemm.available()`."""
    weight, bias = linear._parameters["weight"], linear._parameters["bias"]
    return derived(linear, "_native_weight", (weight,) if bias is None else (weight, bias),
                   lambda: native_gemm.pack(weight, bias))


def native_fused(linears: Sequence[nn.Linear]) -> tuple:
    """The concatenated weights and biases of `linears` (q, k, v; a missing bias counts as zeros) in
    `native_gemm`'s layout, packed once and kept on the first (again when one changed)."""
    params = [linear._parameters for linear in linears]
    weights, biases = [p["weight"] for p in params], [p["bias"] for p in params]
    return derived(linears[0], "_fused_native", weights + [b for b in biases if b is not None],
                   lambda: native_gemm.pack(torch.cat(weights), _concatenated_bias(weights, biases)))


def _concatenated_bias(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None]
                       ) -> torch.Tensor | None:
    """The biases of products concatenated along their outputs, a missing one as zeros; None if all are."""
    return None if all(b is None for b in biases) else torch.cat(
        [b if b is not None else w.new_zeros(w.shape[0]) for w, b in zip(weights, biases)])


def _then_gelu(x: torch.Tensor, gelu: str | None) -> torch.Tensor:
    return x if gelu is None else F.gelu(x, approximate=gelu)


def fused_linears(x: torch.Tensor, linears: tuple[FastLinear, ...]) -> tuple[torch.Tensor, ...] | None:
    """Each FastLinear of `linears` applied to the same x (q, k and v), as one product (oneDNN's, or for few rows
    `native_gemm`'s) over their concatenated weights, packed once beside the parameters (again when one
    changed) and kept on the first; the outputs are views into it. None where the products would not go to
    either kernel (then the caller runs each): a small product, one row, autograd, not float32 on the CPU, or
    no checked op.
    Measured, 2 threads, K 384 (N 3 x 384), 75 rows: 166 vs 191 us; 20 rows: 60 vs 81 us."""
    if not all(isinstance(linear, FastLinear) for linear in linears):  # one was swapped for another module
        return None
    params = [linear._parameters for linear in linears]
    weights = [p["weight"] for p in params]
    out = sum(w.shape[0] for w in weights)
    if x.numel() * out < NATIVE_PRODUCT or x.numel() == x.shape[-1] or not x.is_cpu or x.dtype != torch.float32 \
            or any(w.dtype != torch.float32 for w in weights) \
            or (torch.is_grad_enabled() and (x.requires_grad or any(w.requires_grad for w in weights))):
        return None
    sizes = [w.shape[0] for w in weights]
    if x.numel() <= native_gemm.max_rows() * x.shape[-1]:
        return native_gemm.linear(x, native_fused(linears)).split(sizes, dim=-1)
    op = _op if _op is not _UNCHECKED else onednn_linear()
    if op is None or _pack is None or x.numel() * out < SMALL_PRODUCT:
        return None
    biases = [p["bias"] for p in params]
    packed, bias = derived(linears[0], "_fused_linears", weights + [b for b in biases if b is not None],
                           lambda: (_pack(torch.cat(weights)), _concatenated_bias(weights, biases)))
    return op(x, packed, bias, "none", [], "").split(sizes, dim=-1)


def single_row_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear of one row x (..., C), on whichever of two MKL kernels is faster here for this weight shape and
    thread count: its gemv (F.linear itself) or its gemm over the row twice (`_two_columns`).

    Measured on a 2-core machine: at 1 thread the gemm is faster (1536x576 185 vs 266 us, 576x576 70 vs 97 us,
    the vocabulary head likewise), at 2 threads on a quiet machine twice as fast (the gemv uses one thread), but
    on a loaded machine the gemm's thread barriers make it several times slower than the gemv. So the first
    2 * ROW_TRIALS calls of each (shape, threads) alternate the two, timed (each call is a real product, a
    different layer's weight: the timings include streaming it from memory), and the faster one is kept for
    the process. Only the summation order differs between the two.
    """
    key = (weight.shape[0], weight.shape[1], torch.get_num_threads())
    gemm = _row_choice.get(key)
    if gemm is not None:
        return _two_columns(x, weight, bias) if gemm else F.linear(x, weight, bias)
    with _lock:
        trial = _row_trials.setdefault(key, [0.0, 0.0, 0])  # seconds on the gemv, on the gemm, calls so far
        calls = trial[2]
        trial[2] += 1
    use = calls % 2
    start = time.perf_counter()
    out = _two_columns(x, weight, bias) if use else F.linear(x, weight, bias)
    if calls >= 2:  # the first pair pays each kernel's one-time setup
        trial[use] += time.perf_counter() - start
    if calls + 1 >= 2 * ROW_TRIALS:
        _row_choice[key] = trial[1] < trial[0]
    return out


def _two_columns(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    row = x.reshape(1, -1)
    cols = torch.cat((row, row)).t()  # (C, 2)
    out = torch.mm(weight, cols) if bias is None else torch.addmm(bias[:, None], weight, cols)
    return out[:, 0].contiguous().view(*x.shape[:-1], weight.shape[0])


_conv_op: Callable | None | object = _UNCHECKED  # torch.ops.mkldnn._convolution_pointwise once checked


def _find_conv_op() -> Callable | None:
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_convolution_pointwise", None)


def _probe_conv(op: Callable) -> bool:
    """Whether `op` computes relu(conv2d(x) [+ residual]) and conv2d(x) on a small float32 probe, for contiguous
    and channels-last inputs."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 7, 9, generator=generator)
    weight, bias = torch.randn(8, 6, 3, 3, generator=generator), torch.randn(8, generator=generator)
    residual = torch.randn(2, 8, 4, 5, generator=generator)
    args = ([1, 1], [2, 2], [1, 1], 1)  # padding, stride, dilation, groups
    expected = F.conv2d(x, weight, bias, 2, 1)
    with torch.inference_mode():
        for x_in in (x, x.contiguous(memory_format=torch.channels_last)):
            got = (op(x_in, weight, bias, *args, "none", [], ""), op(x_in, weight, bias, *args, "relu", [], ""),
                   op.binary(x_in, residual, weight, bias, *args, "add", None, "relu", [], ""))
            for out, want in zip(got, (expected, expected.relu(), (expected + residual).relu())):
                if not _matches(out, want, atol=1e-4):
                    return False
    return True


def onednn_conv() -> Callable | None:
    """oneDNN's fused convolution (`torch.ops.mkldnn._convolution_pointwise`, with its `.binary` overload) if it
    passed the check (made once), else None."""
    global _conv_op
    if _conv_op is _UNCHECKED:
        with _lock:
            if _conv_op is _UNCHECKED:
                _conv_op = _checked(_find_conv_op(), _probe_conv, "mkldnn._convolution_pointwise",
                                    "convolutions use F.conv2d")
    return _conv_op


def conv2d(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool = False,
           residual: torch.Tensor | None = None) -> torch.Tensor:
    """relu?(conv2d(x; weight, bias, conv's stride/padding/dilation/groups) + residual?) in one oneDNN call on
    the CPU (float32, no autograd) when `onednn_conv()` passed its check: the add and the ReLU ride on the
    convolution's output instead of two more passes over a full feature map. Otherwise F.conv2d, then in place."""
    op = _conv_op if _conv_op is not _UNCHECKED else onednn_conv()
    if op is None or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 \
            or isinstance(conv.padding, str) or conv.padding_mode != "zeros" \
            or (torch.is_grad_enabled() and weight.requires_grad):
        out = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        if residual is not None:
            out += residual
        return out.relu_() if relu else out
    args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    if residual is None:
        return op(x, weight, bias, *args, "relu" if relu else "none", [], "")
    return op.binary(x, residual, weight, bias, *args, "add", None, "relu" if relu else None, [], "")


def prepare_convolutions(model: nn.Module) -> None:
    """Once at load: every module offering `fold_norm()` (a convolution followed by a fixed BatchNorm) folds the
    norm into derived weights; then, on the CPU, the weights convolutions compute with are stored channels-last:
    oneDNN runs them in its blocked NHWC kernels and the feature maps stay NHWC from layer to layer (measured on
    DETR-R50 at 800x1066, 2 threads: channels-last alone made the forward 1.33x faster; outputs within 1e-6).
    Inputs stay as they are; the checkpoint's own tensors keep their layout where a derived copy replaces them."""
    folded = set()
    for module in model.modules():
        if hasattr(module, "fold_norm"):
            module.fold_norm()
            folded.add(module.convolution)
    for module in model.modules():
        if getattr(module, "fused_weight", None) is not None and module.fused_weight.device.type == "cpu":
            module.fused_weight = module.fused_weight.contiguous(memory_format=torch.channels_last)
        elif isinstance(module, nn.Conv2d) and module not in folded and module.weight.device.type == "cpu":
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)


# ----- a whole post-norm encoder block in one call, for small work -----
# Below this many multiply-adds per block (tokens x the block's dense weights) aten's whole-block op beats the
# module-by-module forward: one dispatch instead of ~20 (hidden 32, 13 tokens, 2 blocks: 68 vs 168 us on one
# thread; hidden 128, 16 tokens: 241 vs 343 us). Above it, the op's plain-layout MKL gemms lose to FastLinear's
# packed oneDNN weights (hidden 256, 16 tokens: 762 vs 679 us; hidden 384, 40 tokens: 4.1 vs 2.2 ms).
SMALL_LAYER = 1 << 22
_layer_op: Callable | None | object = _UNCHECKED  # torch._transformer_encoder_layer_fwd once checked


def _reference_layer(x: torch.Tensor, heads: int, qkv_weight, qkv_bias, proj_weight, proj_bias, gelu: bool,
                     eps: float, norm1_weight, norm1_bias, norm2_weight, norm2_bias, up_weight, up_bias, down_weight,
                     down_bias) -> torch.Tensor:
    """The BERT block in public ops: what `post_norm_layer` must compute (its probe's expectation)."""
    B, T, C = x.shape
    q, k, v = F.linear(x, qkv_weight, qkv_bias).view(B, T, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
    h = F.layer_norm(x + F.linear(attended, proj_weight, proj_bias), (C,), norm1_weight, norm1_bias, eps)
    inner = F.linear(h, up_weight, up_bias)
    inner = F.gelu(inner) if gelu else F.relu(inner)
    return F.layer_norm(h + F.linear(inner, down_weight, down_bias), (C,), norm2_weight, norm2_bias, eps)


def _probe_layer(op: Callable) -> bool:
    """Whether `op` computes `_reference_layer` with GELU and with ReLU on a small float32 probe."""
    generator = torch.Generator().manual_seed(2)
    C, F_, H = 16, 24, 2

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.3

    x = rand(2, 5, C)
    weights = [rand(3 * C, C), rand(3 * C), rand(C, C), rand(C)]
    norms = [1 + rand(C), rand(C), 1 + rand(C), rand(C)]
    ffn = [rand(F_, C), rand(F_), rand(C, F_), rand(C)]
    with torch.inference_mode():
        for gelu in (True, False):
            got = op(x, C, H, *weights, gelu, False, 1e-12, *norms, *ffn)  # False: post-norm
            want = _reference_layer(x, H, *weights, gelu, 1e-12, *norms, *ffn)
            if not _matches(got, want):
                return False
    return True


def _find_layer_op() -> Callable | None:
    return getattr(torch, "_transformer_encoder_layer_fwd", None)  # aten's op through torch's own binding


def whole_layer_op() -> Callable | None:
    """aten's whole-block op `(x, embed_dim, heads, qkv_weight, qkv_bias, proj_weight, proj_bias, gelu, norm_first,
    eps, norm1 weight/bias, norm2 weight/bias, up weight/bias, down weight/bias)` if it passed the check (made
    once), else None."""
    global _layer_op
    if _layer_op is _UNCHECKED:
        with _lock:
            if _layer_op is _UNCHECKED:
                _layer_op = _checked(_find_layer_op(), _probe_layer, "aten._transformer_encoder_layer_fwd",
                                     "encoder blocks run module by module")
    return _layer_op


def post_norm_layer(x: torch.Tensor, heads: int, qkv: tuple[torch.Tensor, torch.Tensor], proj: nn.Linear,
                    norm1: nn.LayerNorm, up: nn.Linear, down: nn.Linear, norm2: nn.LayerNorm, gelu: bool
                    ) -> torch.Tensor | None:
    """The BERT block over x (B, T, C) with no padding: LayerNorm(h + down(act(up(h)))) where
    h = LayerNorm(x + proj(self-attention of x with the fused q/k/v projection `qkv` (weight, bias))), in one
    aten call; None where that op did not pass its check (the caller runs its modules instead)."""
    op = _layer_op if _layer_op is not _UNCHECKED else whole_layer_op()
    if op is None:
        return None
    p1, n1, p2, p3, n2 = proj._parameters, norm1._parameters, up._parameters, down._parameters, norm2._parameters
    return op(x, x.shape[-1], heads, qkv[0], qkv[1], p1["weight"], p1["bias"], gelu, False, norm1.eps,
              n1["weight"], n1["bias"], n2["weight"], n2["bias"], p2["weight"], p2["bias"], p3["weight"], p3["bias"])


# ----- one thread for small work -----
# Below this many multiply-adds a whole forward is faster on the calling thread alone: each op that would wake
# the intra-op pool (layer norm, attention, MKL's gemm) pays more in wake-ups than it saves, and under load a
# woken or spinning worker waits for a core (hidden-32 model, 13 tokens, 2 threads: 0.9 vs 12.6 ms a call).
SMALL_FORWARD = 1 << 23
_threads: tuple | None | object = _UNCHECKED  # (omp_set_num_threads, MKL's per-thread setter), or None


def _thread_controls() -> tuple | None:
    """The OpenMP and MKL runtimes' per-thread thread-count setters as libtorch_cpu binds them, if they
    change what aten reads on this thread and nowhere else."""
    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    if not os.path.isfile(path) or "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    aten = ctypes.CDLL(path)  # symbol lookup covers its dependencies: the OpenMP runtime it was linked with
    set_omp = aten.omp_set_num_threads
    set_mkl = aten.MKL_Set_Num_Threads_Local  # the C entry (the lower-case one is Fortran's, by pointer)
    before = torch.get_num_threads()  # first call on a thread: torch sets its own count there
    seen = []
    set_omp(1)
    previous = set_mkl(1)
    try:
        here = torch.get_num_threads()
        other = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        other.start()
        other.join()
    finally:
        set_omp(before)
        set_mkl(previous)
    ok = here == 1 and seen == [before] and torch.get_num_threads() == before
    return (set_omp, set_mkl) if ok else None


def _controls() -> tuple | None:
    """The runtimes' per-thread setters (`_thread_controls`), looked up and checked once per process."""
    global _threads
    if _threads is _UNCHECKED:  # checked with 2+ threads, so that the check can tell
        with _lock:
            if _threads is _UNCHECKED:
                try:
                    _threads = _thread_controls()
                except (OSError, AttributeError) as error:  # another OpenMP, a static MKL: leave threads alone
                    logger.debug("per-thread OpenMP/MKL settings unavailable: %s", error)
                    _threads = None
    return _threads


class one_thread:  # noqa: N801  (used like a function: `with one_thread():`, as torch.inference_mode)
    """Run the block on the calling thread alone (aten's parallel loops, MKL and oneDNN all read these
    per-thread settings); other threads keep theirs. `torch.set_num_threads` is no substitute: it sets a
    process-wide count, resizes a shared pool and clears oneDNN's caches. Without the runtimes, a no-op.
    A plain class, not a generator: it is entered on every small request."""

    __slots__ = ("restore",)

    def __enter__(self) -> None:
        self.restore = None
        before = torch.get_num_threads()  # also makes torch set up this thread's count first, not inside the block
        if before == 1:
            return
        controls = _threads if _threads is not _UNCHECKED else _controls()
        if controls is not None:
            set_omp, set_mkl = controls
            set_omp(1)
            self.restore = (set_omp, before, set_mkl, set_mkl(1))

    def __exit__(self, *exc) -> None:
        if self.restore is not None:
            set_omp, before, set_mkl, previous = self.restore
            set_omp(before)
            set_mkl(previous)
