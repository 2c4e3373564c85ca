"""GGUF files (llama.cpp, Ollama, LM Studio) → the (config dict, HF checkpoint name → tensor) pair an HF
checkpoint gives, and a Tokenizer from the file's `tokenizer.*` metadata.

Read with the `gguf` package (the format's reference reader): the file is memory-mapped and each tensor
is dequantised on its own, by `gguf.quants.dequantize` (so the values are that package's, bit for bit),
straight into the dtype asked for. The config is built from the metadata as transformers 4.57.6
(`integrations/ggml.py`, `modeling_gguf_pytorch_utils.py`) builds it; tensor names become the Hugging Face
checkpoint names the families' weight maps know, with llama.cpp's Q/K row permutation undone for `llama`
files and GPT-2's linears put back in Conv1D (in, out) layout. Families never know the format.
The tokenizer follows the file: its BOS/EOS, `add_bos_token` and chat template win (transformers, for
example, gives a SmolLM2 file BOS = EOS = `<|im_start|>` and prepends BOS to every prompt).

Why the quantised blocks are not kept for compute (decoding streams every weight once per token, so fewer
bytes would be faster): torch 2.13's CPU has no kernel that multiplies group-quantised weights by float32
activations at float32 accuracy and speed. `_weight_int4pack_mm_for_cpu` / `_weight_int8pack_mm` with float32
activations are 12x / 4x slower than F.linear at one row; with bf16/fp16 activations they round the output to
16 bits; fbgemm's fp16-weight linear needs weights exact in fp16, which 67-75% of Q4_1 and 21% of Q8_0
dequantised values are (SmolLM2); a per-group (32-column) scale through a plain gemm costs 18-48x the
multiply-adds. So the weights are dequantised once, and decoding's one-row products take the fastest float32
kernel (models/kernels.py).
"""

from __future__ import annotations

import mmap
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gpt2")
SUPPORTED_QUANT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")

# `<arch>.<key>` → config key, as transformers maps them (its GGUF_CONFIG_MAPPING).
_DECODER_KEYS = {
    "context_length": "max_position_embeddings", "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size", "embedding_length": "hidden_size", "rope.freq_base": "rope_theta",
    "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps", "vocab_size": "vocab_size",
}
CONFIG_KEYS = {
    "llama": {**_DECODER_KEYS, "rope.dimension_count": "head_dim"},
    "mistral": {**_DECODER_KEYS, "rope.dimension_count": "head_dim"},
    "qwen2": _DECODER_KEYS, "qwen3": _DECODER_KEYS, "phi3": _DECODER_KEYS,
    "gpt2": {"block_count": "n_layer", "context_length": "n_ctx", "embedding_length": "n_embd",
             "feed_forward_length": "feed_forward_length", "attention.head_count": "n_head",
             "attention.layer_norm_epsilon": "layer_norm_epsilon"},
}
# Metadata transformers 4.57.6 drops although the file states it (its model then fails to load the file's
# tensors, or rotates all of each head where the file rotates part): read here, the file wins.
EXTRA_KEYS = {"qwen3": {"attention.key_length": "head_dim"}, "gpt2": {"context_length": "n_positions"},
              "phi3": {"rope.dimension_count": "rotary_dim"}}
TOKEN_ID_KEYS = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
                 "unknown_token_id": "unk_token_id", "padding_token_id": "pad_token_id"}

# GGUF tensor name (without `.weight`/`.bias`; {i} = block) → Hugging Face checkpoint name.
_LLAMA_TENSORS = {
    "token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
    "blk.{i}.attn_norm": "model.layers.{i}.input_layernorm",
    "blk.{i}.ffn_norm": "model.layers.{i}.post_attention_layernorm",
    "blk.{i}.attn_q": "model.layers.{i}.self_attn.q_proj", "blk.{i}.attn_k": "model.layers.{i}.self_attn.k_proj",
    "blk.{i}.attn_v": "model.layers.{i}.self_attn.v_proj",
    "blk.{i}.attn_output": "model.layers.{i}.self_attn.o_proj",
    "blk.{i}.attn_q_norm": "model.layers.{i}.self_attn.q_norm",
    "blk.{i}.attn_k_norm": "model.layers.{i}.self_attn.k_norm",
    "blk.{i}.ffn_gate": "model.layers.{i}.mlp.gate_proj", "blk.{i}.ffn_up": "model.layers.{i}.mlp.up_proj",
    "blk.{i}.ffn_down": "model.layers.{i}.mlp.down_proj",
}
TENSOR_NAMES = {
    "llama": _LLAMA_TENSORS, "mistral": _LLAMA_TENSORS, "qwen2": _LLAMA_TENSORS, "qwen3": _LLAMA_TENSORS,
    "phi3": {**_LLAMA_TENSORS, "blk.{i}.attn_qkv": "model.layers.{i}.self_attn.qkv_proj",
             "blk.{i}.ffn_up": "model.layers.{i}.mlp.gate_up_proj"},
    "gpt2": {"token_embd": "transformer.wte", "position_embd": "transformer.wpe", "output_norm": "transformer.ln_f",
             "output": "lm_head", "blk.{i}.attn_norm": "transformer.h.{i}.ln_1",
             "blk.{i}.attn_qkv": "transformer.h.{i}.attn.c_attn",
             "blk.{i}.attn_output": "transformer.h.{i}.attn.c_proj", "blk.{i}.ffn_norm": "transformer.h.{i}.ln_2",
             "blk.{i}.ffn_up": "transformer.h.{i}.mlp.c_fc", "blk.{i}.ffn_down": "transformer.h.{i}.mlp.c_proj"},
}
CONV1D_TENSORS = r"\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$"  # GPT-2 keeps (in, out)
UNUSED_TENSORS = ("rope_freqs.weight",)  # llama.cpp's precomputed rotary factors; transformers skips them too


class TensorInfo(NamedTuple):
    name: str
    tensor_type: int
    shape: tuple[int, ...]  # ggml order: innermost dimension first
    data: Any  # numpy view of the mapped bytes (or values)
    data_offset: int
    n_bytes: int


class UnsupportedGGUFError(ValueError):
    pass


def _gguf():
    try:
        import gguf
    except ImportError as error:
        raise ImportError('Reading GGUF files needs the `gguf` package: pip install "inferline[gguf]"') from error
    return gguf


class GGUFFile:
    """One GGUF file, memory-mapped; metadata as Python values, tensors dequantised on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise OSError(f"GGUF file {str(self.path)!r} does not exist.")
        try:
            reader = _gguf().GGUFReader(str(self.path))
        except (ValueError, OSError) as error:
            raise OSError(f"{str(self.path)!r} is not a readable GGUF file: {error}") from error
        # The reader's per-element numpy views of the metadata (~160 MiB for a 49k-token vocabulary) go with it;
        # what is kept is compact (one blob per string array), so the freed memory really returns to the system.
        self._fields = {key: _compact(field) for key, field in reader.fields.items()}
        self.tensors = [TensorInfo(t.name, int(t.tensor_type), tuple(int(n) for n in t.shape), t.data.view(),
                                   int(t.data_offset), int(t.n_bytes)) for t in reader.tensors]
        self._map = reader.data
        del reader
        self.architecture = self.get("general.architecture")
        self.model_type = self._model_type()

    def get(self, key: str, default: Any = None) -> Any:
        value = self._fields.get(key)
        return default if value is None else _expand(value)

    @property
    def keys(self) -> list[str]:
        return list(self._fields)

    def _model_type(self) -> str:
        arch = self.architecture
        # llama.cpp writes Mistral as `llama`; transformers calls it mistral only when general.name is exactly that
        model_type = "mistral" if arch == "llama" and self.get("general.name") == "mistral" else arch
        if model_type not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedGGUFError(
                f"GGUF file {self.path.name!r} has general.architecture {arch!r}, which inferline cannot load; "
                f"supported architectures: {', '.join(SUPPORTED_ARCHITECTURES)}.")
        return model_type

    # ----- config -----
    def config(self) -> dict[str, Any]:
        """The config.json transformers would build from this file's metadata."""
        config: dict[str, Any] = {"model_type": self.model_type}
        for key, name in {**CONFIG_KEYS[self.model_type], **EXTRA_KEYS.get(self.model_type, {})}.items():
            value = self.get(f"{self.architecture}.{key}")
            if value is not None:
                config[name] = value
        for key, name in TOKEN_ID_KEYS.items():
            value = self.get(f"tokenizer.ggml.{key}")
            if value is not None:
                config[name] = value
        if "vocab_size" not in config and "tokenizer.ggml.tokens" in self._fields:
            config["vocab_size"] = len(self.get("tokenizer.ggml.tokens"))
        config["tie_word_embeddings"] = all(t.name != "output.weight" for t in self.tensors)
        if "rotary_dim" in config:  # Phi-3: llama.cpp stores the rotated channels, HF their share of a head
            config["partial_rotary_factor"] = config.pop("rotary_dim") / (config["hidden_size"] //
                                                                           config["num_attention_heads"])
        return config

    # ----- tensors -----
    def state_dict(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Hugging Face checkpoint name → tensor in `dtype`, one tensor dequantised at a time."""
        config = self.config()
        names = _name_patterns(TENSOR_NAMES[self.model_type])
        state: dict[str, torch.Tensor] = {}
        unknown = []
        for tensor in self.tensors:
            if tensor.name in UNUSED_TENSORS:
                continue
            name = _hf_name(tensor.name, names)
            if name is None:
                unknown.append(tensor.name)
                continue
            state[name] = self._convert(tensor, name, config, dtype)
            self._release(tensor)
        if unknown:
            raise UnsupportedGGUFError(
                f"GGUF file {self.path.name!r} ({self.model_type}) has tensors inferline does not know: "
                f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}.")
        return state

    def _convert(self, tensor, name: str, config: dict, dtype: torch.dtype) -> torch.Tensor:
        values = dequantize(tensor, dtype)
        if self.architecture == "llama" and (".q_proj." in name or ".k_proj." in name):
            heads = config["num_attention_heads"]
            heads = config.get("num_key_value_heads", heads) if ".k_proj." in name else heads
            values = unpermute_rows(values, heads).contiguous()
        if self.model_type == "gpt2" and re.search(CONV1D_TENSORS, name):
            values = values.t().contiguous()
        return values

    def _release(self, tensor) -> None:
        """Drop the tensor's mapped pages from this process once dequantised (they stay in the page cache)."""
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if advice is None or not isinstance(getattr(self._map, "_mmap", None), mmap.mmap):
            return
        start = tensor.data_offset // mmap.PAGESIZE * mmap.PAGESIZE
        try:
            self._map._mmap.madvise(advice, start, tensor.data_offset + tensor.n_bytes - start)
        except (OSError, ValueError):
            pass  # only memory is at stake

    def tokenizer(self):
        from ...processing.gguf_tokenizer import tokenizer_from_gguf

        return tokenizer_from_gguf(self)


def _compact(field) -> tuple:
    """A metadata field without the reader's views: ("strings", blob, lengths), ("array", values) or ("value", v)."""
    import numpy as np

    types = [int(t) for t in field.types]
    array, string = int(_gguf().GGUFValueType.ARRAY), int(_gguf().GGUFValueType.STRING)
    if len(types) == 2 and types[0] == array and types[1] == string:
        parts = [field.parts[i] for i in field.data]
        return "strings", b"".join(p.tobytes() for p in parts), np.array([p.nbytes for p in parts], dtype=np.int64)
    if len(types) == 2 and types[0] == array:
        return "array", np.concatenate([field.parts[i] for i in field.data]) if field.data else np.array([])
    return "value", field.contents()


def _expand(stored: tuple) -> Any:
    kind, *rest = stored
    if kind == "strings":
        blob, lengths = rest
        ends = lengths.cumsum().tolist()
        return [blob[a:b].decode("utf-8") for a, b in zip([0] + ends[:-1], ends)]
    return rest[0].tolist() if kind == "array" else rest[0]


CHUNK_VALUES = 1 << 20  # values dequantised at a time: the float32 temporaries stay a few MiB


def dequantize(tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One reader tensor → `dtype` tensor in torch layout (rows, columns), by the gguf package's dequantisation,
    a chunk of rows at a time into the preallocated result (the values are the package's, bit for bit)."""
    gguf = _gguf()
    kind = gguf.GGMLQuantizationType(tensor.tensor_type)
    if kind.name not in SUPPORTED_QUANT_TYPES:
        raise UnsupportedGGUFError(
            f"Tensor {tensor.name!r} is stored as {kind.name}, which inferline does not dequantise; "
            f"supported types: {', '.join(SUPPORTED_QUANT_TYPES)}.")
    shape = tuple(reversed(tensor.shape))  # ggml lists dimensions innermost first
    rows = tensor.data.reshape(-1, tensor.data.shape[-1])  # (rows, stored bytes or values per row), memory-mapped
    out = torch.empty(rows.shape[0], shape[-1], dtype=dtype)
    step = max(1, CHUNK_VALUES // shape[-1])
    for start in range(0, rows.shape[0], step):
        chunk = gguf.quants.dequantize(rows[start:start + step], kind)
        if not chunk.flags.writeable:  # F32 comes back as a view of the read-only map
            chunk = chunk.copy()
        out[start:start + step] = torch.from_numpy(chunk)
    return out.reshape(shape)


def unpermute_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row order (it interleaves each head's two rotary halves)."""
    rest = w.shape[1:]
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *rest).transpose(1, 2).reshape(w.shape)


def _name_patterns(table: dict[str, str]) -> list[tuple[re.Pattern, str]]:
    return [(re.compile("^" + re.escape(g).replace(r"\{i\}", r"(\d+)") + r"\.(weight|bias)$"), hf)
            for g, hf in table.items()]


def _hf_name(name: str, patterns: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, hf in patterns:
        match = pattern.match(name)
        if match:
            groups = match.groups()
            return (hf.format(i=groups[0]) if len(groups) == 2 else hf) + "." + groups[-1]
    return None


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config dict, HF checkpoint name → tensor) of a GGUF file."""
    file = GGUFFile(path)
    return file.config(), file.state_dict(dtype)
