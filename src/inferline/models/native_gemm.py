"""A small-row float32 matrix product of our own, in C with AVX2/FMA, compiled once per machine with the system's
C compiler and loaded with ctypes: `available()`, `pack(weight, bias)`, `linear(x, packed, gelu)`.

Why: on CPUs without AVX-512 (an AVX2 AMD EPYC here), oneDNN's brgemm and MKL's sgemm are slow for a few rows
against a weight read once from memory (an encoder at batch size 1: 10-100 tokens), where ONNX Runtime's MLAS
was 1.3-1.9x faster on the same products. This kernel keeps six rows of x against a 16-column panel of the
weight (packed once, panel by panel, so that each panel is one sequential stream), twelve accumulators in
registers, the bias loaded into them at the start and GELU (erf or tanh) applied to them at the end.
Measured on such a machine, 2 threads, the 24 products of a 6-layer MiniLM (K/N 384/1536) with cold weights:
10 rows 4.2-4.6 vs 7.3-7.9 ms on oneDNN, 20 rows 6.1-6.6 vs 9.6-9.7, 70 rows 13.8-14.8 vs 15.8-17.6, 140 rows
26.3-30.1 vs 27.3-28.5 (distilbert's K/N 768/3072: 20 rows 20.7 vs 25.6 ms, 70 rows 55 vs 61, 140 rows 104 vs
105) — so `kernels.FastLinear` sends it products of up to NATIVE_ROWS rows. On AVX-512 CPUs oneDNN's kernels
are twice as wide and this one is not used (`INFERLINE_NATIVE_GEMM=1` forces it, `=0` turns it off).

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

PANEL = 16  # output columns per packed panel: two 8-float AVX registers

SOURCE = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* w (N, K) row-major -> panels of 16 output columns, each K rows of 16 floats (w transposed), zero past N */
void pack_weight(const float *w, float *packed, int64_t N, int64_t K) {
    int64_t panels = (N + 15) / 16;
    for (int64_t p = 0; p < panels; p++) {
        float *dst = packed + p * K * 16;
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < 16; j++) {
                int64_t n = p * 16 + j;
                dst[k * 16 + j] = n < N ? w[n * K + k] : 0.0f;
            }
    }
}

/* exp(a) for a <= 0 (GELU's exp(-z^2)): 2^n e^r with |r| <= ln2 / 2, e^r by Cephes' expf polynomial */
static inline __m256 exp_neg(__m256 a) {
    a = _mm256_max_ps(a, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(a, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), a);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* 0.5 x (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) */
static inline __m256 gelu_erf(__m256 x) {
    __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
    __m256 sign = _mm256_and_ps(z, _mm256_set1_ps(-0.0f));
    __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(a, _mm256_set1_ps(0.3275911f), one));
    __m256 q = _mm256_set1_ps(1.061405429f);
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-1.453152027f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.421413741f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.284496736f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0.254829592f));
    q = _mm256_mul_ps(q, t);
    __m256 erf = _mm256_fnmadd_ps(q, exp_neg(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), a), a)), one);
    erf = _mm256_or_ps(erf, sign);
    return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(erf, _mm256_set1_ps(1.0f)));
}

/* 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), tanh(u) = sign(u) (1 - 2 / (exp(2 |u|) + 1)) */
static inline __m256 gelu_tanh(__m256 x) {
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.79788456080286536f),
                             _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x), _mm256_mul_ps(x, x), x));
    __m256 sign = _mm256_and_ps(u, _mm256_set1_ps(-0.0f));
    __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
    __m256 e = exp_neg(_mm256_mul_ps(a, _mm256_set1_ps(-2.0f)));  /* exp(-2|u|) in (0, 1] */
    __m256 th = _mm256_div_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), e), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    th = _mm256_or_ps(th, sign);
    return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(th, _mm256_set1_ps(1.0f)));
}

/* `rows` (1..6, a constant after inlining) rows of x times one panel, plus its 16 biases, then the activation
   `act` (0 none, 1 GELU with erf, 2 GELU with tanh), into y */
static inline __attribute__((always_inline)) void tile(const float *x, int64_t K, const float *panel,
        const float *bias, float *y, int64_t N, const int rows, int cols, int act) {
    __m256 lo[6], hi[6];
    __m256 b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++) { lo[r] = b0; hi[r] = b1; }
    for (int64_t k = 0; k < K; k++) {
        __m256 w0 = _mm256_loadu_ps(panel + k * 16), w1 = _mm256_loadu_ps(panel + k * 16 + 8);
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) {
            __m256 a = _mm256_broadcast_ss(x + r * K + k);
            lo[r] = _mm256_fmadd_ps(a, w0, lo[r]);
            hi[r] = _mm256_fmadd_ps(a, w1, hi[r]);
        }
    }
    if (act == 1) {
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) { lo[r] = gelu_erf(lo[r]); hi[r] = gelu_erf(hi[r]); }
    } else if (act == 2) {
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) { lo[r] = gelu_tanh(lo[r]); hi[r] = gelu_tanh(hi[r]); }
    }
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++) {
        if (cols == 16) {
            _mm256_storeu_ps(y + r * N, lo[r]);
            _mm256_storeu_ps(y + r * N + 8, hi[r]);
        } else {
            float part[16];
            _mm256_storeu_ps(part, lo[r]);
            _mm256_storeu_ps(part + 8, hi[r]);
            memcpy(y + r * N, part, cols * sizeof(float));
        }
    }
}

static void tile_rows(const float *x, int64_t K, const float *panel, const float *bias, float *y, int64_t N,
                      int rows, int cols, int act) {
    switch (rows) {
        case 6: tile(x, K, panel, bias, y, N, 6, cols, act); break;
        case 5: tile(x, K, panel, bias, y, N, 5, cols, act); break;
        case 4: tile(x, K, panel, bias, y, N, 4, cols, act); break;
        case 3: tile(x, K, panel, bias, y, N, 3, cols, act); break;
        case 2: tile(x, K, panel, bias, y, N, 2, cols, act); break;
        default: tile(x, K, panel, bias, y, N, 1, cols, act); break;
    }
}

/* y (M, N) = act(x (M, K) w^T + bias); `packed` from pack_weight, `bias` padded to whole panels; the panels
   are split between `threads` threads, each streaming its panels once */
void packed_linear(const float *x, const float *packed, const float *bias, float *y, int64_t M, int64_t K,
                   int64_t N, int threads, int act) {
    int64_t panels = (N + 15) / 16;
    #pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t first = panels * t / nt, last = panels * (t + 1) / nt;
        for (int64_t p = first; p < last; p++) {
            int cols = (int)(N - p * 16 < 16 ? N - p * 16 : 16);
            for (int64_t m = 0; m < M; m += 6) {
                int rows = (int)(M - m < 6 ? M - m : 6);
                tile_rows(x + m * K, K, packed + p * K * 16, bias + p * 16, y + m * N + p * 16, N, rows, cols,
                          act);
            }
        }
    }
}
"""

_UNCHECKED = object()
_lib: ctypes.CDLL | None | object = _UNCHECKED
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


def _wanted() -> str | None:
    """Why this machine should not use the kernel, or None when it should."""
    setting = os.environ.get("INFERLINE_NATIVE_GEMM", "").strip()
    if setting == "0":
        return "INFERLINE_NATIVE_GEMM=0"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"not x86-64 Linux ({platform.system()} {platform.machine()})"
    flags = _cpu_flags()
    if not {"avx2", "fma"} <= flags:
        return "the CPU has no AVX2/FMA"
    if "avx512f" in flags and setting != "1":
        return "the CPU has AVX-512, where oneDNN's kernels are faster"
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return "torch's parallel backend is not OpenMP"
    return None


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
    key = hashlib.sha256("\0".join((SOURCE, torch.__version__, compiler, str(gomp))).encode()).hexdigest()[:16]
    target = _cache_dir() / f"small_gemm-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, obj, lib = Path(tmp) / "small_gemm.c", Path(tmp) / "small_gemm.o", Path(tmp) / "small_gemm.so"
        src.write_text(SOURCE)
        flags = ["-O3", "-mavx2", "-mfma", "-fPIC", "-fopenmp"]
        subprocess.run([compiler, *flags, "-c", str(src), "-o", str(obj)], check=True, capture_output=True,
                       timeout=120)
        # linked against torch's OpenMP runtime, not the system's: one thread pool for both
        subprocess.run([compiler, "-shared", str(obj), "-o", str(lib), str(gomp), f"-Wl,-rpath,{gomp.parent}"],
                       check=True, capture_output=True, timeout=120)
        os.replace(lib, target)  # atomic: a concurrent build of the same key writes the same bytes
    return target


def _probe(lib: ctypes.CDLL) -> bool:
    """Whether the kernel computes F.linear, and F.gelu of it (erf and tanh), within 1e-5 on small probes that
    cover every row count of the tile, a part panel and GELU's whole range."""
    generator = torch.Generator().manual_seed(3)
    for rows, k, n in ((7, 40, 37), (13, 24, 64), (1, 8, 5), (6, 16, 16)):
        x, w, b = (torch.randn(rows, k, generator=generator), torch.randn(n, k, generator=generator),
                   torch.randn(n, generator=generator) * 4)
        packed, want = _pack(lib, w, b), F.linear(x, w, b)
        for gelu in (None, "none", "tanh"):
            got = _run(lib, x, packed, torch.get_num_threads(), gelu)
            expected = want if gelu is None else F.gelu(want, approximate=gelu)
            if not torch.allclose(got, expected, rtol=0, atol=1e-5):
                return False
    return True


def _load() -> ctypes.CDLL | None:
    reason = _wanted()
    if reason is not None:
        logger.debug("native small-row GEMM not used: %s", reason)
        return None
    try:
        lib = ctypes.CDLL(str(_build()))
        lib.pack_weight.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
        lib.pack_weight.restype = None
        lib.packed_linear.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3 + [ctypes.c_int] * 2
        lib.packed_linear.restype = None
        if _probe(lib):
            return lib
        logger.info("native small-row GEMM does not match F.linear here; not used.")
    except Exception as error:  # no compiler, a failed build or load, a probe that raised: torch's kernels
        logger.info("native small-row GEMM unavailable (%s); products stay on torch's kernels.", error)
    return None


def library() -> ctypes.CDLL | None:
    """The loaded, checked kernel library, or None (made once per process)."""
    global _lib
    if _lib is _UNCHECKED:
        with _lock:
            if _lib is _UNCHECKED:
                _lib = _load()
    return _lib


def available() -> bool:
    return library() is not None


def _pack(lib: ctypes.CDLL, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    weight = weight.detach().contiguous().float()
    n, k = weight.shape
    panels = -(-n // PANEL)
    packed = torch.empty(panels * PANEL * k)
    lib.pack_weight(weight.data_ptr(), packed.data_ptr(), n, k)
    padded = torch.zeros(panels * PANEL)
    if bias is not None:
        padded[:n] = bias.detach()
    return packed, padded, n


ACTIVATIONS = {None: 0, "none": 1, "tanh": 2}  # F.gelu's `approximate` → the kernel's epilogue


def _run(lib: ctypes.CDLL, x: torch.Tensor, packed: tuple[torch.Tensor, torch.Tensor, int], threads: int,
         gelu: str | None = None) -> torch.Tensor:
    weights, bias, n = packed
    x = x.contiguous()
    k = x.shape[-1]
    rows = x.numel() // k
    out = torch.empty(*x.shape[:-1], n)
    lib.packed_linear(x.data_ptr(), weights.data_ptr(), bias.data_ptr(), out.data_ptr(), rows, k, n, threads,
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
