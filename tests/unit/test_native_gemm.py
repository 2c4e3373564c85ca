"""Our own small-row GEMM (models/native_gemm.py): it builds where it can, computes F.linear for every shape
FastLinear can hand it, is refused when its probe fails, and FastLinear sends it the products it is for."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from inferline.models import kernels, native_gemm


@pytest.fixture(params=[8, 16])
def forced(request, monkeypatch):
    """A fresh load of the kernel at each width (an AVX-512 CPU runs both)."""
    monkeypatch.setenv("INFERLINE_NATIVE_GEMM", str(request.param))
    monkeypatch.setattr(native_gemm, "_lib", native_gemm._UNCHECKED)
    width, reason = native_gemm._width()
    if width is None or shutil.which("gcc") is None:
        pytest.skip(f"no native GEMM of width {request.param} on this machine: {reason or 'no gcc'}")
    assert native_gemm.available(), "the kernel should build and pass its probe on an x86-64 machine with gcc"
    assert native_gemm.library().width == request.param
    return native_gemm


def test_builds_from_source_into_the_cache(forced, monkeypatch, tmp_path):
    monkeypatch.setenv("INFERLINE_CACHE", str(tmp_path))
    monkeypatch.setattr(native_gemm, "_lib", native_gemm._UNCHECKED)
    assert native_gemm.available()
    assert [p.name.startswith("small_gemm-") for p in (tmp_path / "kernels").iterdir()] == [True]


@pytest.mark.parametrize("rows,k,n", [(1, 8, 5), (5, 33, 16), (6, 64, 17), (13, 96, 40), (12, 20, 48),
                                      (25, 7, 33), (96, 384, 1152), (20, 1536, 384)])
def test_matches_f_linear(forced, rows, k, n):
    generator = torch.Generator().manual_seed(rows * 1000 + k + n)
    x, w, b = (torch.randn(2, rows, k, generator=generator), torch.randn(n, k, generator=generator) * 0.1,
               torch.randn(n, generator=generator))
    for bias in (b, None):
        packed, want = forced.pack(w, bias), F.linear(x, w, bias)
        for gelu in (None, "none", "tanh"):
            got = forced.linear(x, packed, gelu)
            assert got.shape == (2, rows, n)
            torch.testing.assert_close(got, want if gelu is None else F.gelu(want, approximate=gelu), rtol=0,
                                       atol=1e-4)


@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_gelu_epilogue_over_its_whole_range(forced, gelu):
    """x through an identity weight: the epilogue alone, from -20 to 20 (both tails, the exp clamp, zero)."""
    x = torch.linspace(-20, 20, 16 * 601).view(-1, 16)
    got = forced.linear(x, forced.pack(torch.eye(16), None), gelu)
    torch.testing.assert_close(got, F.gelu(x, approximate=gelu), rtol=0, atol=2e-6)


def test_strided_input_and_one_thread(forced):
    generator = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(64, 30, generator=generator), torch.randn(24, 64, generator=generator), torch.randn(24)
    packed = forced.pack(w, b)
    with kernels.one_thread():
        got = forced.linear(x.t(), packed)  # (30, 64), not contiguous
    torch.testing.assert_close(got, F.linear(x.t(), w, b), rtol=0, atol=1e-5)


def test_refused_when_its_probe_fails(forced, monkeypatch):
    real = native_gemm._run
    monkeypatch.setattr(native_gemm, "_run", lambda *args: real(*args) + 1e-3)
    monkeypatch.setattr(native_gemm, "_lib", native_gemm._UNCHECKED)
    assert not native_gemm.available()


def test_relu_epilogue(forced):
    x = torch.linspace(-3, 3, 16 * 7).view(-1, 16)
    torch.testing.assert_close(forced.linear(x, forced.pack(torch.eye(16), None), "relu"), F.relu(x), rtol=0, atol=0)


def _block_case(B, T, C, H, I, seed, spread=1.0):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.1):
        return torch.randn(*shape, generator=generator) * scale

    x = rand(B, T, C, scale=spread)
    weights = [(rand(3 * C, C), rand(3 * C)), (rand(C, C), rand(C)), (rand(I, C), rand(I)), (rand(C, I), rand(C))]
    norms = [(1 + rand(C), rand(C), 1e-12), (1 + rand(C), rand(C), 1e-6)]
    return x, weights, norms


@pytest.mark.parametrize("B,T,C,H,I", [(1, 1, 16, 2, 24), (1, 13, 32, 4, 37), (2, 17, 96, 3, 200),
                                       (1, 128, 384, 12, 1536), (3, 40, 64, 1, 64), (2, 11, 48, 2, 50)])
@pytest.mark.parametrize("act", ["none", "tanh", "relu"])
@pytest.mark.parametrize("padded", [False, True])
def test_block_matches_public_ops(forced, B, T, C, H, I, act, padded):
    """post_norm_block against the block in F.linear / SDPA / F.layer_norm: one token, heads narrower than a
    vector, several batch rows, the longest rows it takes, one head, heads of 24 (whole vectors and a scalar
    tail), lengths that leave a part tile of queries (1, 3, 5 rows); unpadded and with rows padded on the
    right, on the left and (a row of one token) almost wholly."""
    x, weights, norms = _block_case(B, T, C, H, I, B * T + C)
    mask = None
    if padded:
        mask = torch.zeros(B, T)
        low = torch.finfo(torch.float32).min
        mask[0, T - T // 3:] = low
        if B > 1:
            mask[1, : T // 2] = low
            mask[-1, 1:] = low
    packed = [forced.pack(w, b) for w, b in weights]
    scale = (C // H) ** -0.5
    block = forced.BlockWeights(H, scale, packed[0], packed[1], norms[0], packed[2], act, packed[3], norms[1])
    got = forced.post_norm_block(x, block, mask)
    want = native_gemm._reference_block(x, H, scale, weights[0], weights[1], norms[0], weights[2], act,
                                        weights[3], norms[1], mask)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_block_refuses_inputs_it_cannot_read(forced):
    x, weights, norms = _block_case(2, 5, 16, 2, 24, 0)
    packed = [forced.pack(w, b) for w, b in weights]
    block = forced.BlockWeights(2, 0.5, packed[0], packed[1], norms[0], packed[2], "none", packed[3], norms[1])
    with pytest.raises(ValueError, match=r"mask must be float32 \(2, 5\)"):
        forced.post_norm_block(x, block, torch.zeros(2, 1, 1, 5))
    with pytest.raises(ValueError, match=r"x must be float32 on the CPU with 16 channels.*got torch.float64"):
        forced.post_norm_block(x.double(), block)
    with pytest.raises(ValueError, match=r"with 16 channels.*with 8"):
        forced.post_norm_block(x[..., :8], block)


def test_block_softmax_of_large_scores(forced):
    """Scores of several hundred (a peaked softmax, exp far below zero for most keys) stay finite and exact."""
    x, weights, norms = _block_case(1, 21, 32, 2, 40, 7, spread=30.0)
    packed = [forced.pack(w, b) for w, b in weights]
    block = forced.BlockWeights(2, 4.0, packed[0], packed[1], norms[0], packed[2], "none", packed[3], norms[1])
    got = forced.post_norm_block(x, block)
    want = native_gemm._reference_block(x, 2, 4.0, weights[0], weights[1], norms[0], weights[2], "none",
                                        weights[3], norms[1])
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_refused_when_its_block_fails_the_probe(forced, monkeypatch):
    real = native_gemm._block
    monkeypatch.setattr(native_gemm, "_block", lambda *args: real(*args) * 1.001)
    monkeypatch.setattr(native_gemm, "_lib", native_gemm._UNCHECKED)
    assert not native_gemm.available() and native_gemm.block_rows() == 0


def test_width_follows_the_cpu_unless_set(monkeypatch):
    monkeypatch.setattr(native_gemm, "_cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    for setting, width in (("", 16), ("1", 16), ("8", 8), ("16", 16), ("0", None)):
        monkeypatch.setenv("INFERLINE_NATIVE_GEMM", setting)
        if native_gemm._width()[1].startswith("not x86-64") or "OpenMP" in native_gemm._width()[1]:
            pytest.skip(native_gemm._width()[1])
        assert native_gemm._width()[0] == width, setting
    monkeypatch.setattr(native_gemm, "_cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setenv("INFERLINE_NATIVE_GEMM", "")
    assert native_gemm._width()[0] == 8
    monkeypatch.setenv("INFERLINE_NATIVE_GEMM", "16")
    assert native_gemm._width() == (None, "INFERLINE_NATIVE_GEMM=16, but the CPU has no AVX-512")
    monkeypatch.setenv("INFERLINE_NATIVE_GEMM", "yes")
    with pytest.raises(ValueError, match="INFERLINE_NATIVE_GEMM='yes'"):
        native_gemm._width()


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("INFERLINE_NATIVE_GEMM", "0")
    monkeypatch.setattr(native_gemm, "_lib", native_gemm._UNCHECKED)
    assert not native_gemm.available()
    layer = kernels.FastLinear(384, 384)
    x = torch.randn(20, 384)
    with torch.inference_mode():
        layer(x)
    assert "_native_weight" not in layer.__dict__


def test_fast_linear_and_fused_projections_use_it(forced):
    torch.manual_seed(0)
    layers = tuple(kernels.FastLinear(384, 384) for _ in range(3))
    x = torch.randn(1, 20, 384)  # 20 rows: under max_rows(), over NATIVE_PRODUCT
    with torch.inference_mode():
        out = layers[0](x, gelu="none")
        assert "_native_weight" in layers[0].__dict__
        torch.testing.assert_close(out, F.gelu(F.linear(x, layers[0].weight, layers[0].bias)), rtol=0, atol=1e-5)
        fused = kernels.fused_linears(x, layers)
        assert "_fused_native" in layers[0].__dict__
        for got, layer in zip(fused, layers):
            torch.testing.assert_close(got, F.linear(x, layer.weight, layer.bias), rtol=0, atol=1e-5)
        layers[0].weight.mul_(2)  # changed in place: packed again
        torch.testing.assert_close(layers[0](x), F.linear(x, layers[0].weight, layers[0].bias), rtol=0, atol=1e-5)
        big = torch.randn(1, native_gemm.max_rows() + 1, 384)
        layers[1](big)
        assert "_native_weight" not in layers[1].__dict__  # more rows: torch's kernels


def test_grad_goes_to_torch(forced):
    layer = kernels.FastLinear(384, 384)
    x = torch.randn(20, 384, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and "_native_weight" not in layer.__dict__
