"""A small-row float32 matrix product of our own, in C, compiled once per machine with the system's C compiler and
loaded with ctypes: `available()`, `max_rows()`, `pack(weight, bias)`, `linear(x, packed, gelu)`; and on it a whole
BERT block in one call: `block_rows()`, `BlockWeights(...)`, `post_norm_block(x, weights)`.

Why: for a few rows against a weight read once from memory (an encoder at batch size 1: 10-100 tokens), oneDNN's
brgemm and MKL's sgemm fall behind ONNX Runtime's MLAS (1.3-1.9x on an AVX2 AMD EPYC). This kernel keeps a tile of
rows of x against two vectors' worth of weight columns in registers (the weight packed once into 16-column panels,
each one sequential stream, asked for 32 steps ahead: at a dozen rows the hardware prefetcher alone left the
products waiting on memory at ~13 of this VM's ~29 GB/s; 8-18% off 6 MiniLM / DistilBERT blocks at 12-16 tokens),
the bias loaded into the accumulators at the start and GELU (erf or tanh) applied to them at the end. One C
source, written with GCC's vector extensions, is compiled for two widths: 8 floats (AVX2/FMA, tiles of 6 rows x 16
columns) and 16 floats (AVX-512, 12 rows x 32 columns); the CPU's flags pick one.
Measured, 2 threads, the 24 products of a 6-layer MiniLM (K/N 384/1536) with cold weights, medians, ms:
  AVX2 EPYC, width 8:    10 rows 4.2-4.6 vs 7.3-7.9 on oneDNN, 20 rows 6.1-6.6 vs 9.6-9.7, 70 rows 13.8-14.8 vs
                         15.8-17.6, 140 rows 26.3-30.1 vs 27.3-28.5 (so up to 96 rows);
  Zen 4 AVX-512, width 16: 10 rows 2.4-3.7 vs 3.2-4.5, 20 rows 3.7-5.5 vs 4.3-6.2, 40 rows 5.6-6.3 vs 5.9-7.2,
                         70 rows 8.0-11.2 vs 9.4-10.9, 96 rows 11.2-13.6 vs 11-15 (so up to 64 rows).
The block (q/k/v product, attention, output product, residual + LayerNorm, feed-forward, residual + LayerNorm)
runs in one OpenMP parallel region with a barrier between steps: no Python, no aten dispatch and no pool wake-up
between its ten or so operations, which at a few dozen tokens took a quarter of MiniLM's forward (BLOCK_ROWS).
Its attention takes 8 queries at a time (4 at width 8) against two vectors of keys, and their probabilities against
two vectors of a head's values: 16 independent sums in registers where one query's single sum was a chain of
dependent FMAs. Zen 4, 2 threads, 6 MiniLM blocks, min of 30 interleaved: 70 tokens 9.1 vs 9.9 ms, 128: 16.6 vs
18.6; DistilBERT-base 128: 66.1 vs 71.8 (the same sums in the same order: the output is unchanged, bit for bit).
`INFERLINE_NATIVE_GEMM=0` turns it off, `=8` / `=16` picks the width (16 needs AVX-512), `=1` or unset: the CPU's.

Its threads are torch's: the library links against the OpenMP runtime torch ships (torch/lib/libgomp.so.1),
which the loader then finds already loaded, so the parallel region reuses torch's pool, with the thread count
torch has for the calling thread (`torch.set_num_threads`, `kernels.one_thread`). No compiler, another OpenMP,
another CPU, or a probe that does not match `F.linear` / `F.gelu` within 1e-5: `available()` is False and
every product stays on torch's kernels.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

PANEL = 16  # output columns per packed panel; panels come in pairs (a tile of the 16-float width spans two)
TILE_COLUMNS = 2 * PANEL
MAX_ROWS = {8: 96, 16: 64}  # per width: products of at most this many rows beat oneDNN's (measured above)
# per width: a whole BERT block (`post_norm_block`) of at most this many rows beats the module-by-module forward
# (oneDNN's products above MAX_ROWS). Zen 4, 2 threads, forward of MiniLM-L6 / DistilBERT-base at one row, ms,
# block vs modules: width 16: 12 tokens 3.4 vs 4.6, 40: 7.2 vs 8.3, 64: 11.0 vs 12.4, 96: 16.2 vs 20.0,
# 140: 25.4 vs 30.4 (MiniLM); 20: 14.2 vs 15.9, 64: 38.7 vs 40.2, 128: 70.5 vs 71.2, 192: 117 vs 99 (DistilBERT);
# width 8 (on the same CPU): 20: 5.4 vs 6.8, 64: 14.1 vs 13.9, 96: 22.9 vs 21.4 (MiniLM).
BLOCK_ROWS = {8: 64, 16: 128}

SOURCE = Path(__file__).with_name("native_gemm.c")  # the C source, compiled at first use

_UNCHECKED = object()
_lib: Kernel | None | object = _UNCHECKED
_lock = threading.Lock()


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _width() -> tuple[int | None, str]:
    """The vector width (floats) this machine should use the kernel at, or None and why not."""
    setting = os.environ.get("INFERLINE_NATIVE_GEMM", "").strip()
    if setting == "0":
        return None, "INFERLINE_NATIVE_GEMM=0"
    if setting not in ("", "1", "8", "16"):
        raise ValueError(f"INFERLINE_NATIVE_GEMM={setting!r}: expected 0 (off), 8 or 16 (that width), or 1 or unset "
                         "(the CPU's width)")
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None, f"not x86-64 Linux ({platform.system()} {platform.machine()})"
    flags = _cpu_flags()
    if not {"avx2", "fma"} <= flags:
        return None, "the CPU has no AVX2/FMA"
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None, "torch's parallel backend is not OpenMP"
    if setting == "16" and "avx512f" not in flags:
        return None, "INFERLINE_NATIVE_GEMM=16, but the CPU has no AVX-512"
    if setting in ("8", "16"):
        return int(setting), ""
    return (16 if "avx512f" in flags else 8), ""


def _cache_dir() -> Path:
    root = os.environ.get("INFERLINE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "inferline")
    return Path(root) / "kernels"


def _build() -> Path:
    """The compiled library for this source, torch and compiler (made once, in the cache directory)."""
    compiler = shutil.which(os.environ.get("CC", "gcc"))
    if compiler is None:
        raise OSError("no C compiler (gcc, or $CC) on PATH")
    gomp = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    if not gomp.is_file():
        raise OSError(f"torch ships no {gomp.name} to share its thread pool with")
    source = SOURCE.read_text()
    key = hashlib.sha256("\0".join((source, torch.__version__, compiler, str(gomp))).encode()).hexdigest()[:16]
    target = _cache_dir() / f"small_gemm-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, lib = Path(tmp) / "small_gemm.c", Path(tmp) / "small_gemm.so"
        src.write_text(source)
        objects = []
        for width, isa in ((8, ["-mavx2"]), (16, ["-mavx512f"])):  # both in one library; the CPU picks at load
            obj = Path(tmp) / f"small_gemm{width}.o"
            subprocess.run([compiler, "-O3", *isa, "-mfma", "-fPIC", "-fopenmp", f"-DW={width}", "-c", str(src),
                            "-o", str(obj)], check=True, capture_output=True, timeout=120)
            objects.append(str(obj))
        # linked against torch's OpenMP runtime, not the system's: one thread pool for both
        subprocess.run([compiler, "-shared", *objects, "-o", str(lib), str(gomp), f"-Wl,-rpath,{gomp.parent}"],
                       check=True, capture_output=True, timeout=120)
        os.replace(lib, target)  # atomic: a concurrent build of the same key writes the same bytes
    return target


class Kernel:
    """The loaded library at one width: `pack_weight` and that width's `packed_linear`, and its row limit."""

    def __init__(self, lib: ctypes.CDLL, width: int):
        self.lib, self.width, self.max_rows, self.block_rows = lib, width, MAX_ROWS[width], BLOCK_ROWS[width]
        self.pack_weight = lib.pack_weight
        self.pack_weight.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                     ctypes.c_int64]
        self.pack_weight.restype = None
        self.packed_linear = getattr(lib, f"packed_linear{width}")
        self.packed_linear.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3 + [ctypes.c_int] * 2
        self.packed_linear.restype = None
        self.post_norm_block = getattr(lib, f"post_norm_block{width}")
        self.post_norm_block.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2 + [ctypes.c_void_p, ctypes.c_int]
        self.post_norm_block.restype = None
        rows = getattr(lib, f"attention_rows{width}")
        rows.argtypes, rows.restype = [], ctypes.c_int
        self.attention_rows = rows()  # queries per attention tile: post_norm_block's scratch is sized by it


class _BlockWeights(ctypes.Structure):
    _fields_ = ([(name, ctypes.c_int64) for name in ("C", "H", "I")]
                + [(name, ctypes.c_float) for name in ("scale", "eps1", "eps2")] + [("act", ctypes.c_int)]
                + [(name, ctypes.c_void_p) for name in ("wqkv", "bqkv", "wo", "bo", "g1", "beta1", "wup", "bup",
                                                        "wdown", "bdown", "g2", "beta2")])


class BlockWeights:
    """A BERT block's weights for `post_norm_block`: qkv/proj/up/down `pack`ed (weight, bias) (qkv's weight
    (3C, C), rows [q; k; v], heads of C / heads each); norm1/norm2 (weight, bias, eps); act "none" (GELU, erf),
    "tanh" (GELU, tanh) or "relu"; `scale` multiplies q k^T. Holds the C structure of their addresses and the
    tensors themselves (kept alive while it is)."""

    def __init__(self, heads: int, scale: float, qkv, proj, norm1, up, act: str, down, norm2):
        norms = [t.detach().contiguous().float() for t in (*norm1[:2], *norm2[:2])]
        self.tensors = (qkv, proj, up, down, norms)
        self.hidden, self.heads, self.inner = proj[2], heads, up[2]
        self.struct = _BlockWeights(
            proj[2], heads, up[2], scale, norm1[2], norm2[2], ACTIVATIONS[act],
            *(t.data_ptr() for t in (*qkv[:2], *proj[:2], *norms[:2], *up[:2], *down[:2], *norms[2:])))
        self.ref = ctypes.byref(self.struct)


def _probe(kernel: Kernel) -> bool:
    """Whether the kernel computes F.linear, and F.gelu of it (erf and tanh), within 1e-5 on small probes that
    cover every row count of a tile (1-12), a whole and a part tile of columns and GELU's whole range."""
    generator = torch.Generator().manual_seed(3)
    for rows, k, n in [(rows, 24, 37) for rows in range(1, 14)] + [(25, 40, 64), (6, 16, 16), (1, 8, 5)]:
        x, w, b = (torch.randn(rows, k, generator=generator), torch.randn(n, k, generator=generator),
                   torch.randn(n, generator=generator) * 4)
        packed, want = _pack(kernel, w, b), F.linear(x, w, b)
        for gelu in (None, "none", "tanh"):
            got = _run(kernel, x, packed, torch.get_num_threads(), gelu)
            expected = want if gelu is None else F.gelu(want, approximate=gelu)
            if not torch.allclose(got, expected, rtol=0, atol=1e-5):
                return False
    return _probe_block(kernel)


def _reference_block(x, heads, scale, qkv, proj, norm1, up, act, down, norm2, mask=None):
    """The BERT block in public ops, weights as (weight, bias) and norms as (weight, bias, eps), mask (B, T)
    additive per key or None: what `post_norm_block` must compute."""
    B, T, C = x.shape
    q, k, v = F.linear(x, *qkv).view(B, T, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    mask = None if mask is None else mask[:, None, None, :]
    attended = F.scaled_dot_product_attention(q, k, v, mask, scale=scale).transpose(1, 2).reshape(B, T, C)
    h = F.layer_norm(x + F.linear(attended, *proj), (C,), *norm1)
    inner = F.linear(h, *up)
    inner = F.relu(inner) if act == "relu" else F.gelu(inner, approximate=act)
    return F.layer_norm(h + F.linear(inner, *down), (C,), *norm2)


def _probe_block(kernel: Kernel) -> bool:
    """Whether `post_norm_block` computes `_reference_block` within 1e-5 (each activation; head sizes below,
    at and above a vector; lengths inside one vector and across two; with the last batch row padded)."""
    generator = torch.Generator().manual_seed(4)

    def rand(*shape, scale=0.3):
        return torch.randn(*shape, generator=generator) * scale

    for B, T, C, H, I in [(1, 3, 8, 2, 11), (2, 5, 24, 3, 37), (1, 19, 64, 2, 96), (3, 4, 40, 1, 20)]:
        x = rand(B, T, C, scale=1.0)
        weights = [(rand(3 * C, C), rand(3 * C)), (rand(C, C), rand(C)), (rand(I, C), rand(I)), (rand(C, I), rand(C))]
        norms = [(1 + rand(C), rand(C), 1e-12), (1 + rand(C), rand(C), 1e-5)]
        packed = [_pack(kernel, w, b) for w, b in weights]
        for act in ("none", "tanh", "relu"):
            scale = 0.7 if act == "relu" else (C // H) ** -0.5
            block = BlockWeights(H, scale, packed[0], packed[1], norms[0], packed[2], act, packed[3], norms[1])
            mask = torch.zeros(B, T)
            mask[-1, T // 2 + 1:] = torch.finfo(torch.float32).min
            for keys in (None, mask):
                got = _block(kernel, x, block, torch.get_num_threads(), keys)
                want = _reference_block(x, H, scale, weights[0], weights[1], norms[0], weights[2], act, weights[3],
                                        norms[1], keys)
                if not torch.allclose(got, want, rtol=0, atol=1e-5):
                    return False
    return True


def _load() -> Kernel | None:
    width, reason = _width()
    if width is None:
        logger.debug("native small-row GEMM not used: %s", reason)
        return None
    try:
        kernel = Kernel(ctypes.CDLL(str(_build())), width)
        if _probe(kernel):
            return kernel
        logger.info("native small-row GEMM (width %d) does not match F.linear here; not used.", width)
    except Exception as error:  # no compiler, a failed build or load, a probe that raised: torch's kernels
        logger.info("native small-row GEMM unavailable (%s); products stay on torch's kernels.", error)
    return None


def library() -> Kernel | None:
    """The loaded, checked kernel, or None (made once per process)."""
    global _lib
    if _lib is _UNCHECKED:
        with _lock:
            if _lib is _UNCHECKED:
                _lib = _load()
    return _lib


def available() -> bool:
    return library() is not None


def max_rows() -> int:
    """Products of at most this many rows are faster here than on oneDNN (0 where the kernel is unavailable)."""
    kernel = library()
    return 0 if kernel is None else kernel.max_rows


def block_rows() -> int:
    """Blocks (`post_norm_block`) of at most this many rows are faster here than module by module (0 where the
    kernel is unavailable)."""
    kernel = library()
    return 0 if kernel is None else kernel.block_rows


def _pack(kernel: Kernel, weight: torch.Tensor, bias: torch.Tensor | None
          ) -> tuple[torch.Tensor, torch.Tensor, int]:
    weight = weight.detach().contiguous().float()
    n, k = weight.shape
    columns = -(-n // TILE_COLUMNS) * TILE_COLUMNS  # whole tiles of either width
    packed = torch.empty(columns * k)
    kernel.pack_weight(weight.data_ptr(), packed.data_ptr(), n, k, columns // PANEL)
    padded = torch.zeros(columns)
    if bias is not None:
        padded[:n] = bias.detach()
    return packed, padded, n


ACTIVATIONS = {None: 0, "none": 1, "tanh": 2, "relu": 3}  # F.gelu's `approximate` (or ReLU) → the epilogue


def _run(kernel: Kernel, x: torch.Tensor, packed: tuple[torch.Tensor, torch.Tensor, int], threads: int,
         gelu: str | None = None) -> torch.Tensor:
    weights, bias, n = packed
    x = x.contiguous()
    k = x.shape[-1]
    rows = x.numel() // k
    out = torch.empty(*x.shape[:-1], n)
    kernel.packed_linear(x.data_ptr(), weights.data_ptr(), bias.data_ptr(), out.data_ptr(), rows, k, n, threads,
                         ACTIVATIONS[gelu])
    return out


def pack(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """weight (N, K) and bias (N) or None in the kernel's layout: (panels, padded bias, N). Needs `available()`."""
    return _pack(library(), weight, bias)


def linear(x: torch.Tensor, packed: tuple[torch.Tensor, torch.Tensor, int], gelu: str | None = None
           ) -> torch.Tensor:
    """F.linear(x, weight, bias) of float32 CPU x (..., K) on the packed weight, on torch's thread count for
    this thread; with gelu ("none": erf, or "tanh"), F.gelu of it, computed on the product's registers.
    Needs `available()`."""
    return _run(library(), x, packed, torch.get_num_threads(), gelu)


def _block(kernel: Kernel, x: torch.Tensor, weights: BlockWeights, threads: int,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    B, T, C = x.shape
    if C != weights.hidden or x.dtype != torch.float32 or not x.is_cpu:
        raise ValueError(f"post_norm_block: x must be float32 on the CPU with {weights.hidden} channels (the "
                         f"block's weights); got {x.dtype} on {x.device} with {C}.")
    if mask is not None:
        if mask.shape != (B, T) or mask.dtype != torch.float32:
            raise ValueError(f"post_norm_block: the mask must be float32 ({B}, {T}) (additive, per key); got "
                             f"{mask.dtype} {tuple(mask.shape)}.")
        mask = mask.contiguous()
    padded = -(-T // kernel.width) * kernel.width
    x = x.contiguous()
    out = torch.empty(B, T, C)
    work = torch.empty(B * T * (6 * C + weights.inner) + threads * (C // weights.heads + kernel.attention_rows) * padded)
    kernel.post_norm_block(x.data_ptr(), None if mask is None else mask.data_ptr(), out.data_ptr(),
                           work.data_ptr(), B, T, weights.ref, threads)
    return out


def post_norm_block(x: torch.Tensor, weights: BlockWeights, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The BERT block over float32 CPU x (B, T, C) in one call: h = LayerNorm1(x + proj(softmax(q k^T * scale +
    mask) v)), then LayerNorm2(h + down(act(up(h)))), on `weights` (`BlockWeights`); `mask`: None or float32
    (B, T), added to every query's scores over the keys (padding: a large negative number). Needs
    `available()`; worth it for at most `block_rows()` rows B * T. On torch's thread count for this thread."""
    return _block(library(), x, weights, torch.get_num_threads(), mask)
