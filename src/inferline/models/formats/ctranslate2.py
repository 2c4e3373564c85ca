"""CTranslate2 Whisper directories (the layout faster-whisper reads) → a Hugging Face checkpoint.

A CTranslate2 `model.bin` is: uint32 format version, the spec name and uint32 revision, uint32 count,
then per variable its name, uint8 rank, uint32 dims, uint8 dtype (float32, int8, int16, int32, float16,
bfloat16), uint32 byte count and the raw data; then uint32 aliases (name → variable). Strings are a
uint16 length (terminating NUL included) and UTF-8 bytes. A model.bin may ship split in parts
(`model.bin.part1`, ... possibly in sibling directories); they are concatenated.

`read_ctranslate2(folder)` gives the (config dict, HF name → tensor) pair an HF checkpoint gives, and
`write_hf_checkpoint(folder, out)` writes config.json, generation_config.json, model.safetensors,
tokenizer files and preprocessor_config.json that transformers itself loads. Pitfalls of these files:
the tokenizer.json has no timestamp tokens (they follow <|notimestamps|>, 0.02 s apart), and an `.en`
model's config.json may still list every language id (an English-only model never detects a language).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import torch

DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, "bfloat16")
TIMESTAMPS = 1501  # <|0.00|> … <|30.00|>
MAX_INITIAL_TIMESTAMP_INDEX = 50  # as the Hub's Whisper generation configs


def model_bin_parts(folder: Path) -> list[Path]:
    folder = Path(folder)
    if (folder / "model.bin").is_file():
        return [folder / "model.bin"]
    parts = sorted(folder.glob("model.bin.part*"))
    if parts:  # later parts may live in sibling directories (one per package)
        wanted = {f"model.bin.part{i}" for i in range(1, 10)}
        siblings = [p for p in folder.parent.parent.glob(f"*/{folder.name}/model.bin.part*") if p.name in wanted]
        parts = sorted({p.name: p for p in [*siblings, *parts]}.values(), key=lambda p: int(p.name[14:]))
    return parts


def is_ctranslate2_dir(folder) -> bool:
    folder = Path(folder)
    parts = model_bin_parts(folder)
    if not parts or not (folder / "config.json").is_file():
        return False
    return "model_type" not in json.loads((folder / "config.json").read_text())


def read_variables(data: bytes) -> tuple[str, dict[str, np.ndarray]]:
    """model.bin bytes → (spec name, variable name → array); aliases resolved."""
    offset = 0

    def take(fmt):
        nonlocal offset
        value = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value[0]

    def string():
        nonlocal offset
        length = take("H")
        value = data[offset: offset + length - 1].decode("utf-8")
        offset += length
        return value

    version = take("I")
    if version < 5:
        raise OSError(f"CTranslate2 model.bin format version {version} is not supported (5 or later).")
    spec = string()
    take("I")  # spec revision
    variables = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype, size = DTYPES[take("B")], take("I")
        stored = np.uint16 if dtype == "bfloat16" else dtype
        raw = np.frombuffer(data, dtype=stored, count=size // np.dtype(stored).itemsize, offset=offset)
        if dtype == "bfloat16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        variables[name] = raw.reshape(shape)
        offset += size
    for _ in range(take("I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return spec, variables


def _layer_count(variables: dict, stack: str) -> int:
    return len({name.split("/")[1] for name in variables if re.match(rf"{stack}/layer_\d+/", name)})


def _t(array: np.ndarray) -> torch.Tensor:
    if array.dtype == np.int8:
        raise OSError("int8-quantised CTranslate2 weights cannot be read back to float; convert the model "
                      "without quantization.")
    return torch.from_numpy(np.array(array, dtype=np.float32))


def whisper_state(variables: dict) -> dict[str, torch.Tensor]:
    """CTranslate2 Whisper variables → transformers' WhisperForConditionalGeneration names."""
    state: dict[str, torch.Tensor] = {}

    def linear(ours: str, theirs: str, bias: bool = True):
        state[f"{ours}.weight"] = _t(variables[f"{theirs}/weight"])
        if bias:
            state[f"{ours}.bias"] = _t(variables[f"{theirs}/bias"])

    def norm(ours: str, theirs: str):
        state[f"{ours}.weight"], state[f"{ours}.bias"] = _t(variables[f"{theirs}/gamma"]), _t(variables[f"{theirs}/beta"])

    def split(ours: list[str], theirs: str):  # fused projections, output rows in order (q, k, v) / (k, v)
        weights = _t(variables[f"{theirs}/weight"]).chunk(len(ours))
        biases = _t(variables[f"{theirs}/bias"]).chunk(len(ours))
        for name, w, b in zip(ours, weights, biases):
            state[f"{name}.weight"] = w.clone()
            if not name.endswith("k_proj"):  # Whisper's key projection has no bias (CTranslate2 stores zeros)
                state[f"{name}.bias"] = b.clone()

    for stack in ("encoder", "decoder"):
        top = f"model.{stack}"
        state[f"{top}.embed_positions.weight"] = _t(variables[f"{stack}/position_encodings/encodings"])
        norm(f"{top}.layer_norm", f"{stack}/layer_norm")
        for i in range(_layer_count(variables, stack)):
            ours, theirs = f"{top}.layers.{i}", f"{stack}/layer_{i}"
            attn = f"{ours}.self_attn"
            split([f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"], f"{theirs}/self_attention/linear_0")
            linear(f"{attn}.out_proj", f"{theirs}/self_attention/linear_1")
            norm(f"{ours}.self_attn_layer_norm", f"{theirs}/self_attention/layer_norm")
            if stack == "decoder":
                cross = f"{ours}.encoder_attn"
                linear(f"{cross}.q_proj", f"{theirs}/attention/linear_0")
                split([f"{cross}.k_proj", f"{cross}.v_proj"], f"{theirs}/attention/linear_1")
                linear(f"{cross}.out_proj", f"{theirs}/attention/linear_2")
                norm(f"{ours}.encoder_attn_layer_norm", f"{theirs}/attention/layer_norm")
            linear(f"{ours}.fc1", f"{theirs}/ffn/linear_0")
            linear(f"{ours}.fc2", f"{theirs}/ffn/linear_1")
            norm(f"{ours}.final_layer_norm", f"{theirs}/ffn/layer_norm")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    state["model.decoder.embed_tokens.weight"] = _t(variables["decoder/embeddings/weight"])
    return state


def _token_ids(tokenizer_json: dict) -> dict[str, int]:
    ids = dict(tokenizer_json["model"]["vocab"])
    ids.update({t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])})
    return ids


def read_ctranslate2(folder) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """A CTranslate2 Whisper directory → (config.json dict, HF state dict, extras: generation config,
    tokenizer.json with timestamp tokens, preprocessor config)."""
    folder = Path(folder)
    parts = model_bin_parts(folder)
    if not parts:
        raise OSError(f"{str(folder)!r} has no CTranslate2 model.bin (or model.bin.part1, ...).")
    spec, variables = read_variables(b"".join(p.read_bytes() for p in parts))
    if spec != "WhisperSpec":
        raise OSError(f"{str(folder)!r} holds a CTranslate2 {spec}; inferline reads Whisper (WhisperSpec) only.")
    ct2 = json.loads((folder / "config.json").read_text())
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    state = whisper_state(variables)
    conv1 = state["model.encoder.conv1.weight"]  # (C, mels, 3)
    d_model, mels = conv1.shape[0], conv1.shape[1]
    vocab_size = state["model.decoder.embed_tokens.weight"].shape[0]
    heads = int(np.asarray(variables["encoder/num_heads"]).reshape(-1)[0])
    ids = _token_ids(tokenizer)
    eot, sot, no_ts = ids["<|endoftext|>"], ids["<|startoftranscript|>"], ids["<|notimestamps|>"]
    multilingual = vocab_size >= 51865  # .en vocabularies have one token fewer (no <|yue|>-era language rows)
    _add_timestamps(tokenizer, no_ts + 1, vocab_size)
    config = {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper", "vocab_size": vocab_size,
        "num_mel_bins": mels, "d_model": d_model, "encoder_layers": _layer_count(variables, "encoder"),
        "decoder_layers": _layer_count(variables, "decoder"), "encoder_attention_heads": heads,
        "decoder_attention_heads": heads, "encoder_ffn_dim": state["model.encoder.layers.0.fc1.weight"].shape[0],
        "decoder_ffn_dim": state["model.decoder.layers.0.fc1.weight"].shape[0],
        "max_source_positions": state["model.encoder.embed_positions.weight"].shape[0],
        "max_target_positions": state["model.decoder.embed_positions.weight"].shape[0],
        "pad_token_id": eot, "bos_token_id": eot, "eos_token_id": eot, "decoder_start_token_id": sot,
        "begin_suppress_tokens": ct2.get("suppress_ids_begin"), "suppress_tokens": ct2.get("suppress_ids"),
        "torch_dtype": "float32", "tie_word_embeddings": True,
    }
    generation = {
        "decoder_start_token_id": sot, "bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot,
        "max_length": config["max_target_positions"], "suppress_tokens": ct2.get("suppress_ids", []),
        "begin_suppress_tokens": ct2.get("suppress_ids_begin", [220, eot]),
        "alignment_heads": ct2.get("alignment_heads", []), "no_timestamps_token_id": no_ts,
        "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX, "is_multilingual": multilingual,
        "prev_sot_token_id": ids.get("<|startofprev|>"), "return_timestamps": False,
    }
    if multilingual:  # an .en model lists language ids too, but must never detect or force one
        names = {i: t for t, i in ids.items()}
        generation["lang_to_id"] = {names[i]: i for i in ct2.get("lang_ids", []) if i in names}
        generation["task_to_id"] = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    preprocessor = {"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": mels,
                    "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400,
                    "padding_value": 0.0, "return_attention_mask": False, "processor_class": "WhisperProcessor",
                    "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right"}
    return config, state, {"generation_config": generation, "tokenizer": tokenizer, "preprocessor": preprocessor}


def _add_timestamps(tokenizer: dict, first_id: int, vocab_size: int) -> None:
    present = {t["id"] for t in tokenizer["added_tokens"]}
    for i in range(min(TIMESTAMPS, vocab_size - first_id)):
        if first_id + i not in present:
            tokenizer["added_tokens"].append({"id": first_id + i, "content": f"<|{i * 0.02:.2f}|>", "single_word": False,
                                              "lstrip": False, "rstrip": False, "normalized": False, "special": False})


def write_hf_checkpoint(folder, out) -> Path:
    """Convert a CTranslate2 Whisper directory into a Hugging Face checkpoint directory `out`."""
    from safetensors.torch import save_file

    config, state, extras = read_ctranslate2(folder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"model.safetensors.tmp{os.getpid()}"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / "model.safetensors")
    tokenizer = extras["tokenizer"]
    names = {t["id"]: t["content"] for t in tokenizer["added_tokens"]}
    eot = names[config["eos_token_id"]]
    files = {
        "config.json": config, "generation_config.json": extras["generation_config"],
        "preprocessor_config.json": extras["preprocessor"], "tokenizer.json": tokenizer,
        "tokenizer_config.json": {"tokenizer_class": "WhisperTokenizer", "bos_token": eot, "eos_token": eot,
                                  "unk_token": eot, "pad_token": eot, "model_max_length": 1024, "errors": "replace",
                                  "add_prefix_space": False, "clean_up_tokenization_spaces": True,
                                  "processor_class": "WhisperProcessor",
                                  "additional_special_tokens": [t["content"] for t in tokenizer["added_tokens"]
                                                                if t["special"] and t["content"] != eot]},
        "special_tokens_map.json": {"bos_token": eot, "eos_token": eot, "unk_token": eot, "pad_token": eot},
    }
    for name, content in files.items():
        (out / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def hf_view(folder) -> Path:
    """A converted copy of a CTranslate2 directory, made once and cached (INFERLINE_CACHE or ~/.cache/inferline)."""
    folder = Path(folder).resolve()
    parts = model_bin_parts(folder)
    key = hashlib.sha1(json.dumps([str(folder), [(str(p), p.stat().st_size, p.stat().st_mtime) for p in parts]])
                       .encode()).hexdigest()[:16]
    root = Path(os.environ.get("INFERLINE_CACHE", Path.home() / ".cache" / "inferline"))
    out = root / "ctranslate2" / f"{folder.name}-{key}"
    if not (out / "config.json").is_file():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        write_hf_checkpoint(folder, tmp)
        try:
            tmp.rename(out)
        except OSError:  # another process converted it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return out
