"""Loading touches no process-wide torch state, and FastLinear's private-op path falls back to F.linear."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from parity.compare import assert_same

INIT_NAMES = ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
              "zeros_", "ones_", "constant_")


def _kaiming_initialised(make) -> bool:
    """Whether nn.Linear(64, 64) made by `make` holds torch's default init for a fixed seed."""
    torch.manual_seed(123)
    weight = make().weight.detach()
    torch.manual_seed(123)
    expected = torch.empty(64, 64).uniform_(-64 ** -0.5, 64 ** -0.5)  # kaiming_uniform_(a=sqrt(5)) for fan_in 64
    return torch.equal(weight, expected)


def test_overlapping_loads_leave_torch_init_alone():
    """Two loads whose builds overlap (A starts, B starts, A ends, B ends: the order that left a global patch
    in place), while the user builds a module of their own in a third thread."""
    from inferline.models.weights import WeightMap, load_weights

    originals = {name: getattr(nn.init, name) for name in INIT_NAMES}
    a_in, b_in, user_done, a_out = (threading.Event() for _ in range(4))
    errors = []

    def build_a():
        layer = nn.Linear(4, 4)
        a_in.set()
        assert b_in.wait(30) and user_done.wait(30)
        return layer

    def build_b():
        assert a_in.wait(30)
        layer = nn.Linear(4, 4)
        b_in.set()
        assert a_out.wait(30)
        return layer

    def load(build, done=None):
        try:
            load_weights(build, {"weight": torch.randn(4, 4), "bias": torch.randn(4)}, WeightMap(), torch.float32)
        except BaseException as error:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(error)
        finally:
            if done is not None:
                done.set()

    threads = [threading.Thread(target=load, args=(build_a, a_out)), threading.Thread(target=load, args=(build_b,))]
    for thread in threads:
        thread.start()
    try:
        assert b_in.wait(30), errors
        assert _kaiming_initialised(lambda: nn.Linear(64, 64))  # while both builds run
    finally:
        user_done.set()
        for thread in threads:
            thread.join(60)
    assert not errors, errors
    assert {name: getattr(nn.init, name) for name in INIT_NAMES} == originals
    assert _kaiming_initialised(lambda: nn.Linear(64, 64))


def test_loads_in_two_threads_leave_torch_init_alone(checkpoint):
    from inferline.models.registry import load_model

    originals = {name: getattr(nn.init, name) for name in INIT_NAMES}
    fill_padding = nn.Embedding._fill_padding_idx_with_zero
    jobs = [(checkpoint("bert", "token-classification"), "token-classification"),
            (checkpoint("gpt2", "causal-lm"), "causal-lm")]
    for _ in range(3):
        start, errors = threading.Barrier(len(jobs)), []

        def load(path, head):
            start.wait()
            try:
                load_model(path, head)
            except Exception as error:  # surfaced below: a thread's exception would otherwise vanish
                errors.append(error)

        threads = [threading.Thread(target=load, args=job) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
    assert {name: getattr(nn.init, name) for name in INIT_NAMES} == originals
    assert nn.Embedding._fill_padding_idx_with_zero is fill_padding
    assert _kaiming_initialised(lambda: nn.Linear(64, 64))
    embedding = nn.Embedding(10, 4, padding_idx=0)
    assert bool((embedding.weight[0] == 0).all()) and bool((embedding.weight[1:] != 0).all())


def test_fast_linear_rejects_an_op_that_fails_its_probe(monkeypatch):
    from inferline.models import kernels

    def wrong(x, weight, bias, *args):
        return torch.nn.functional.linear(x, weight, bias) + 1e-3

    def raises(*args):
        raise RuntimeError("changed signature")

    for op in (wrong, raises, None):
        monkeypatch.setattr(kernels, "_find_op", lambda op=op: op)
        monkeypatch.setattr(kernels, "_op", kernels._UNCHECKED)
        assert kernels.onednn_linear() is None
        layer = kernels.FastLinear(8, 4)
        x = torch.randn(3, 8)
        with torch.inference_mode():
            assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
def test_fast_linear_accepts_torch_onednn_linear(monkeypatch):
    from inferline.models import kernels

    monkeypatch.setattr(kernels, "_op", kernels._UNCHECKED)
    assert kernels.onednn_linear() is torch.ops.mkldnn._linear_pointwise


KERNELS = ["onednn", "native8", "native16"]


def count_calls(owner, name: str, monkeypatch, real=None) -> list:
    """`owner.name` (or `real` put in its place) wrapped so that each call appends to the list returned."""
    calls = []
    real = getattr(owner, name) if real is None else real
    monkeypatch.setattr(owner, name, lambda *args: calls.append(1) or real(*args))
    return calls


def use_kernel(kernel: str, monkeypatch) -> None:
    """Products that leave F.linear go to oneDNN ("onednn") or to our own small-row kernel at a width ("native8":
    AVX2, run where the CPU has AVX-512 too; "native16": AVX-512); skipped where this machine cannot run it."""
    from inferline.models import native_gemm

    monkeypatch.setattr(native_gemm, "_lib", None if kernel == "onednn" else native_gemm._UNCHECKED)
    if kernel.startswith("native"):
        monkeypatch.setenv("INFERLINE_NATIVE_GEMM", kernel.removeprefix("native"))
        if not native_gemm.available():
            pytest.skip(f"no native GEMM of width {kernel.removeprefix('native')} on this machine "
                        f"({native_gemm._width()[1] or 'no gcc?'})")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("arch,head", [("gpt2", "causal-lm"), ("t5", "seq2seq-lm")])
def test_forced_fallback_gives_the_same_outputs(arch, head, kernel, checkpoint, monkeypatch):
    import transformers

    from fixtures.checkpoints import AUTO_CLASSES
    from inferline.models import kernels, native_gemm
    from inferline.models.registry import load_model

    use_kernel(kernel, monkeypatch)

    path = checkpoint(arch, head)
    ours = load_model(path, head)
    theirs = getattr(transformers, AUTO_CLASSES[head]).from_pretrained(path).eval()
    ids = torch.randint(3, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    args = (ids, torch.ones_like(ids)) + ((ids[:, :5],) if head == "seq2seq-lm" else ())
    monkeypatch.setattr(kernels, "SMALL_PRODUCT", 0)  # tiny shapes too: every linear on oneDNN (or ours)
    monkeypatch.setattr(kernels, "NATIVE_PRODUCT", 0)
    with torch.inference_mode():
        fast = ours(*args)
        monkeypatch.setattr(kernels, "_op", None)  # as if the private op were missing or failed its probe
        monkeypatch.setattr(native_gemm, "_lib", None)
        fallback = ours(*args)
        extra = {"decoder_input_ids": args[2]} if head == "seq2seq-lm" else {}
        expected = theirs(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits
    assert_same(fallback, fast, atol=1e-5)
    assert_same(fallback, expected)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("arch", ["bert", "distilbert", "electra", "deberta-v2", "roberta"])
def test_encoders_on_onednn_equal_transformers(arch, kernel, checkpoint, monkeypatch):
    """Tiny fixtures stay under FastLinear's NATIVE_PRODUCT / SMALL_PRODUCT (F.linear); forced onto oneDNN or
    our own small-row kernel, every encoder linear takes the kernel base-sized models use, and the logits
    still equal transformers'."""
    import transformers

    from inferline.models import kernels, native_gemm
    from inferline.models.registry import load_model

    use_kernel(kernel, monkeypatch)

    head = "token-classification"
    path = checkpoint(arch, head)
    ours = load_model(path, head)
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(path).eval()
    ids = torch.randint(5, 60, (2, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    monkeypatch.setattr(kernels, "SMALL_PRODUCT", 0)
    monkeypatch.setattr(kernels, "NATIVE_PRODUCT", 0)
    if kernel == "onednn":
        op = kernels.onednn_linear()
        assert op is not None
        calls = count_calls(kernels, "_op", monkeypatch, op)
    else:
        calls = count_calls(native_gemm, "linear", monkeypatch)
    with torch.inference_mode():
        got = ours(ids, mask)
        expected = theirs(input_ids=ids, attention_mask=mask).logits
    assert calls, f"no linear took the {kernel} path"
    assert_same(got[mask.bool()], expected[mask.bool()])


def test_fast_linear_keeps_small_products_on_f_linear(monkeypatch):
    from inferline.models import kernels, native_gemm

    monkeypatch.setattr(kernels, "_op", lambda *a: pytest.fail("a small product reached oneDNN"))
    monkeypatch.setattr(native_gemm, "linear", lambda *a: pytest.fail("a small product reached native_gemm"))
    layer = kernels.FastLinear(32, 32)
    with torch.inference_mode():
        layer(torch.randn(2, 13, 32))


def test_fused_convolution_rejects_an_op_that_fails_its_probe(monkeypatch):
    from inferline.models import kernels

    class Wrong:  # right signatures, wrong sums
        def __call__(self, x, weight, bias, padding, stride, dilation, groups, *args):
            return torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups) + 1e-3

        def binary(self, x, other, weight, bias, padding, stride, dilation, groups, *args):
            return self(x, weight, bias, padding, stride, dilation, groups) + other

    def raises(*args):
        raise RuntimeError("changed signature")

    conv = nn.Conv2d(6, 8, 3, padding=1, bias=False)
    x, residual = torch.randn(1, 6, 5, 7), torch.randn(1, 8, 5, 7)
    for op in (Wrong(), raises, None):
        monkeypatch.setattr(kernels, "_find_conv_op", lambda op=op: op)
        monkeypatch.setattr(kernels, "_conv_op", kernels._UNCHECKED)
        assert kernels.onednn_conv() is None
        with torch.inference_mode():
            got = kernels.conv2d(x, conv, conv.weight, None, relu=True, residual=residual)
            assert torch.equal(got, (conv(x) + residual).relu())


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
@pytest.mark.parametrize("arch,head", [("detr", "object-detection"), ("resnet", "image-classification")])
def test_folded_batch_norms_equal_the_plain_path_and_leave_the_checkpoint_alone(arch, head, monkeypatch):
    """prepare_convolutions folds each ResNet BatchNorm into derived buffers at load: the forward equals the
    unfolded module's (on oneDNN's fused convolution and on F.conv2d), and the state dict (what saving writes)
    is the checkpoint's, bit for bit."""
    from safetensors.torch import load_file

    from fixtures.vision_checkpoints import build_vision
    from inferline.models import kernels
    from inferline.models.registry import load_model

    path = build_vision(arch, head)
    model = load_model(path, head)
    assert kernels.onednn_conv() is torch.ops.mkldnn._convolution_pointwise
    folded = [m for m in model.modules() if getattr(m, "fused_weight", None) is not None]
    assert folded and all(m.fused_weight.is_contiguous(memory_format=torch.channels_last) for m in folded)
    stored = load_file(str(path / "model.safetensors"))
    names = model.checkpoint_names
    state = model.state_dict()
    assert all(torch.equal(state[ours], stored[name]) for ours, name in names.items() if name in stored)
    x = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fused = model(x)
        monkeypatch.setattr(kernels, "_conv_op", None)  # as if the private op were missing
        fallback = model(x)
        for m in folded:
            m.fused_weight = None  # the plain path: convolution, then BatchNorm
        plain = model(x)
    for a, b, c in zip(fused, fallback, plain):
        assert_same(a, c, atol=1e-5)
        assert_same(b, c, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_single_row_linears_equal_transformers(arch, checkpoint, monkeypatch):
    """Tiny fixtures stay under SINGLE_ROW_PRODUCT; forced onto `single_row_linear` (every one-row linear of a
    decode step, biases included for GPT-2), greedy generation still gives transformers' tokens."""
    import transformers

    from inferline.generation import GenerationConfig, generate
    from inferline.models import kernels
    from inferline.models.registry import load_model

    path = checkpoint(arch, "causal-lm")
    ours = load_model(path, "causal-lm")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    ids = torch.randint(3, 60, (1, 7), generator=torch.Generator().manual_seed(0))
    kwargs = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=1)
    monkeypatch.setattr(kernels, "SINGLE_ROW_PRODUCT", 0)
    calls = count_calls(kernels, "single_row_linear", monkeypatch)
    got = generate(ours, ids, torch.ones_like(ids), GenerationConfig.for_model(ours).update(**kwargs))
    with torch.inference_mode():
        expected = theirs.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    assert calls, "no linear took the single-row path"
    assert torch.equal(got, expected)


def test_single_row_linear_settles_on_one_kernel(monkeypatch):
    """The first calls of a shape alternate MKL's gemv and the two-column gemm, then one is kept; both give
    F.linear's values up to the summation order, with and without bias."""
    from inferline.models import kernels

    monkeypatch.setattr(kernels, "_row_choice", {})
    monkeypatch.setattr(kernels, "_row_trials", {})
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(300, 40, generator=generator), torch.randn(300, generator=generator)
    key = (300, 40, torch.get_num_threads())
    for i in range(2 * kernels.ROW_TRIALS + 2):
        x = torch.randn(1, 1, 40, generator=generator)
        for b in (None, bias):
            got = kernels.single_row_linear(x, weight, b)
            assert got.shape == (1, 1, 300) and got.is_contiguous()
            assert_same(got, torch.nn.functional.linear(x, weight, b), atol=1e-5)
    assert key in kernels._row_choice
    for choice in (True, False):
        kernels._row_choice[key] = choice
        assert_same(kernels.single_row_linear(x, weight, bias), torch.nn.functional.linear(x, weight, bias), atol=1e-5)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
def test_fast_linear_packed_weight_follows_the_weight():
    from inferline.models import kernels

    layer = kernels.FastLinear(256, 512)
    x = torch.randn(16, 256)  # 16 x 256 x 512 multiply-adds: oneDNN's path
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), rtol=0, atol=1e-4)
        first = layer.__dict__.get("_packed_weight")
        layer(x)
        assert layer.__dict__.get("_packed_weight") is first  # reordered once, not per call
    with torch.no_grad():
        layer.weight.mul_(-2)  # changed in place: the packed copy is made again
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), rtol=0, atol=1e-4)
    layer.weight.data = torch.randn(512, 256)  # new data under the same parameter (as Module.to does)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), rtol=0, atol=1e-4)
    layer.weight = torch.nn.Parameter(torch.randn(512, 256))  # replaced
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), rtol=0, atol=1e-4)


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_one_thread_is_this_threads_only(two_threads):
    import threading

    from inferline.models import kernels

    before, seen, entered, release = torch.get_num_threads(), [], threading.Event(), threading.Event()

    def small_forward():
        with kernels.one_thread():
            seen.append(torch.get_num_threads())
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=small_forward)
    worker.start()
    entered.wait(5)
    here = torch.get_num_threads()  # another thread inside one_thread leaves this one alone
    release.set()
    worker.join()
    assert seen == [1 if kernels._threads is not None else before] and here == before
    with kernels.one_thread():
        inside = torch.get_num_threads()
    assert torch.get_num_threads() == before and inside in (1, before)


BLOCKS = ["aten", "native8", "native16"]


def use_block(path: str, monkeypatch) -> None:
    """A small unpadded BERT block runs as one call: aten's whole-block op ("aten": our kernel off) or our own
    kernel's at a width; skipped where this machine cannot run it."""
    use_kernel("onednn" if path == "aten" else path, monkeypatch)


def module_by_module(layer, x: torch.Tensor, mask, monkeypatch) -> torch.Tensor:
    """layer(x, mask) with no whole-block call of either kind: the reference a block call must equal."""
    from inferline.models import native_gemm, post_norm

    with monkeypatch.context() as off:
        off.setattr(native_gemm, "block_rows", lambda: 0)
        off.setattr(post_norm, "SMALL_LAYER", 0)
        return layer(x, mask)


def count_blocks(path: str, monkeypatch) -> list:
    """Each whole-block call of `path` appends to the list returned."""
    from inferline.models import kernels, native_gemm

    if path == "aten":
        op = kernels.whole_layer_op()
        assert op is not None
        return count_calls(kernels, "_layer_op", monkeypatch, op)
    return count_calls(native_gemm, "post_norm_block", monkeypatch)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("arch,whole", [("bert", True), ("distilbert", True), ("electra", True), ("roberta", True),
                                        ("deberta-v2", False)])
@pytest.mark.parametrize("batch", [1, 3, "padded"])
def test_whole_block_equals_transformers(arch, whole, block, batch, checkpoint, monkeypatch):
    """A small input runs each plain BERT block as one call, aten's or our kernel's (DeBERTa's disentangled
    attention never does; a padded batch only on our kernel); the logits equal transformers' and the
    module-by-module path's (at the real tokens where rows are padded)."""
    import transformers

    from inferline.models import native_gemm, post_norm
    from inferline.models.registry import load_model

    use_block(block, monkeypatch)
    head = "token-classification"
    path = checkpoint(arch, head)
    ours = load_model(path, head)
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(path).eval()
    ids = torch.randint(5, 60, (3 if batch == "padded" else batch, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    if batch == "padded":
        mask[1, 6:] = 0
        mask[2, 2:] = 0
        whole = whole and block != "aten"
    real = mask.bool()
    calls = count_blocks(block, monkeypatch)
    with torch.inference_mode():
        got = ours(ids, mask)
        expected = theirs(input_ids=ids, attention_mask=mask).logits
        monkeypatch.setattr(post_norm, "SMALL_LAYER", 0)  # every block module by module
        monkeypatch.setattr(native_gemm, "block_rows", lambda: 0)
        modules = ours(ids, mask)
    blocks = sum(isinstance(m, post_norm.PostNormEncoderLayer) for m in ours.modules())
    assert blocks and len(calls) == (blocks if whole else 0)
    assert_same(got[real], expected[real])
    assert_same(got[real], modules[real], atol=1e-5)


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
@pytest.mark.parametrize("kernel", ["native8", "native16"])
def test_native_block_equals_the_modules(act, kernel, monkeypatch):
    """Our kernel's block, each activation BERT's relatives use, heads of 8 and 64 columns, 1 to 64 rows (one
    vector of keys and several), equals the module-by-module forward (FastLinear on F.linear)."""
    from inferline.models import native_gemm, post_norm

    use_kernel(kernel, monkeypatch)
    generator = torch.Generator().manual_seed(1)
    for hidden, heads, inner, shape in ((32, 4, 37, (1, 13)), (128, 2, 300, (2, 17)), (64, 1, 64, (1, 64)),
                                        (48, 6, 96, (4, 1))):
        torch.manual_seed(hidden)
        layer = post_norm.PostNormEncoderLayer(hidden, heads, inner, act, 1e-12).eval()
        for name, p in layer.named_parameters():  # LayerNorms away from (1, 0), so a wrong one shows
            p.data += torch.randn(p.shape, generator=generator) * 0.1
        x = torch.randn(*shape, hidden, generator=generator)
        calls = count_blocks(kernel, monkeypatch)
        with torch.inference_mode():
            got, expected = layer(x, None), module_by_module(layer, x, None, monkeypatch)
        assert calls == [1]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    rows = native_gemm.block_rows()
    x = torch.randn(1, rows + 1, 32, generator=generator)  # over its row limit: module by module
    calls = count_blocks(kernel, monkeypatch)
    layer = post_norm.PostNormEncoderLayer(32, 4, 37, act, 1e-12).eval()
    with torch.inference_mode():
        layer(x, None)
    assert calls == []


def test_whole_block_op_rejected_when_it_fails_its_probe(monkeypatch):
    from inferline.models import kernels
    from inferline.models.post_norm import PostNormEncoderLayer

    def wrong(x, *args):
        return x

    def raises(*args):
        raise RuntimeError("changed signature")

    use_block("aten", monkeypatch)
    layer = PostNormEncoderLayer(32, 4, 48, "gelu", 1e-12).eval()
    x = torch.randn(1, 7, 32)
    for op in (wrong, raises, None):
        monkeypatch.setattr(kernels, "_find_layer_op", lambda op=op: op)
        monkeypatch.setattr(kernels, "_layer_op", kernels._UNCHECKED)
        assert kernels.whole_layer_op() is None
        with torch.inference_mode():
            assert layer._whole(x, False) is None
            out = layer(x, None)
        assert torch.isfinite(out).all() and not torch.equal(out, x)


@pytest.mark.parametrize("kernel", ["native8", "native16"])
def test_native_block_takes_a_mask_of_any_layout(kernel, monkeypatch):
    """A padding mask broadcast over the batch (an expanded view, not contiguous) reaches the block too."""
    from inferline.models import layers, post_norm

    use_kernel(kernel, monkeypatch)
    torch.manual_seed(0)
    layer = post_norm.PostNormEncoderLayer(32, 4, 48, "gelu", 1e-12).eval()
    x = torch.randn(3, 9, 32)
    mask = layers.padding_mask(torch.tensor([[1] * 6 + [0] * 3]), torch.float32).expand(3, 1, 1, 9)
    calls = count_blocks(kernel, monkeypatch)
    with torch.inference_mode():
        got, expected = layer(x, mask), module_by_module(layer, x, mask, monkeypatch)
    assert calls == [1]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("block", BLOCKS)
def test_whole_block_follows_the_weights(block, monkeypatch):
    """The concatenated (aten) or packed (our kernel) q/k/v projection and packed weights are made again when a
    weight is changed in place, given new .data or replaced; the state dict never sees them."""
    from inferline.models import post_norm

    use_block(block, monkeypatch)
    torch.manual_seed(0)
    layer = post_norm.PostNormEncoderLayer(32, 4, 48, "relu", 1e-12).eval()
    keys = set(layer.state_dict())
    x = torch.randn(2, 5, 32)

    def check():
        with torch.inference_mode():
            fused = layer._whole(x, block != "aten")
            expected = module_by_module(layer, x, None, monkeypatch)
        assert fused is not None
        torch.testing.assert_close(fused, expected, rtol=0, atol=1e-5)

    check()
    query = layer.attention.self.query
    with torch.no_grad():
        query.weight.mul_(-2)
    check()
    layer.attention.self.value.bias.data = torch.randn(32)
    check()
    layer.attention.self.key.weight = nn.Parameter(torch.randn(32, 32))
    check()
    layer.output.dense.weight = nn.Parameter(torch.randn(32, 48))
    check()
    with torch.no_grad():
        layer.output.LayerNorm.weight.mul_(3)
    check()
    assert set(layer.state_dict()) == keys


def test_matmul_attention_equals_sdpa(monkeypatch):
    """Small CPU attention runs as matmuls around a softmax, a few batch rows at a time; SDPA is the reference."""
    from inferline.models import layers

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(5, 3, 7, 8, generator=generator) for _ in range(3))
    mask = layers.padding_mask(torch.tensor([[1] * 7] * 3 + [[1] * 4 + [0] * 3, [1] * 2 + [0] * 5]), torch.float32)
    calls = count_calls(layers, "_matmul_attention", monkeypatch)
    for limit in (1 << 19, 2 * 3 * 7 * 7):  # all rows at once; two rows at a time
        monkeypatch.setattr(layers, "SMALL_SCORES", limit)
        for m, scale in ((None, None), (mask, None), (mask, 1.0), (mask[:1], 0.5)):
            expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scale)
            torch.testing.assert_close(layers.attention(q, k, v, m, scale), expected, rtol=0, atol=1e-6)
    assert len(calls) == 8


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
def test_fused_linears_equal_each_linear_and_follow_the_weights(monkeypatch):
    """q/k/v as one oneDNN product: each output equals its own linear (a missing bias counts as zeros), and the
    concatenated packed weight is made again when one weight changes; small products are left to the caller.
    (Our own small-row kernel's fused path: tests/unit/test_native_gemm.py.)"""
    from inferline.models import kernels, native_gemm

    monkeypatch.setattr(native_gemm, "_lib", None)
    torch.manual_seed(0)
    linears = (kernels.FastLinear(256, 256), kernels.FastLinear(256, 128, bias=False), kernels.FastLinear(256, 128))
    x = torch.randn(2, 24, 256)

    def check():
        with torch.inference_mode():
            outs = kernels.fused_linears(x, linears)
            assert outs is not None and len(outs) == 3
            for out, linear in zip(outs, linears):
                expected = torch.nn.functional.linear(x, linear.weight, linear.bias)
                torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)

    check()
    with torch.no_grad():
        linears[1].weight.mul_(-2)
    check()
    linears[2].bias = nn.Parameter(torch.randn(128))
    check()
    with torch.inference_mode():
        assert kernels.fused_linears(torch.randn(1, 256), linears) is None  # one row: single_row_linear's case
        assert kernels.fused_linears(torch.randn(2, 3, 256), linears) is None  # a small product: F.linear's


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_fast_linear_gelu_epilogue_equals_f_gelu(gelu, monkeypatch):
    from inferline.models import kernels

    torch.manual_seed(0)
    layer = kernels.FastLinear(256, 512)
    x = torch.randn(16, 256)  # oneDNN's path
    expected = torch.nn.functional.gelu(torch.nn.functional.linear(x, layer.weight, layer.bias), approximate=gelu)
    with torch.inference_mode():
        kernels.onednn_linear()
        assert kernels._gelu_epilogue[0]
        torch.testing.assert_close(layer(x, gelu), expected, rtol=0, atol=1e-4)
        monkeypatch.setattr(kernels, "_gelu_epilogue", [False])  # as if the epilogue failed its probe
        torch.testing.assert_close(layer(x, gelu), expected, rtol=0, atol=1e-4)
        torch.testing.assert_close(layer(x[:2, :8].repeat(1, 32), gelu),  # a small product on F.linear
                                   torch.nn.functional.gelu(torch.nn.functional.linear(
                                       x[:2, :8].repeat(1, 32), layer.weight, layer.bias), approximate=gelu),
                                   rtol=0, atol=1e-5)
