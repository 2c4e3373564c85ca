"""A Tokenizer from a GGUF file's `tokenizer.ggml.*` metadata, as the file (and llama.cpp) define it.

`tokenizer.ggml.model` "gpt2" is a byte-level BPE with merges, split as `tokenizer.ggml.pre` names;
"llama" is a SentencePiece-style BPE over ▁-words with byte fallback, whose merges are either stored or
rebuilt from the token scores. Token types mark control tokens (special, never split) and user-defined
ones (added); BOS/EOS/UNK/PAD and `add_bos_token` / `add_eos_token` / `add_space_prefix` come from the
file, as does `tokenizer.chat_template` (named templates too).
"""

from __future__ import annotations

import logging
from typing import Any

from tokenizers import AddedToken, Regex
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)

CONTROL, USER_DEFINED = 3, 4  # llama.cpp token types

_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
# tokenizer.ggml.pre → (split regex, digits one by one first), llama.cpp's pre-tokenizer types
PRE_TOKENIZERS = {
    "default": (_GPT2_SPLIT, False), "gpt-2": (_GPT2_SPLIT, False), "gpt2": (_GPT2_SPLIT, False),
    "smollm": (_GPT2_SPLIT, True), "starcoder": (_GPT2_SPLIT, True), "refact": (_GPT2_SPLIT, True),
    "llama-bpe": (_LLAMA3_SPLIT, False), "llama3": (_LLAMA3_SPLIT, False),
    "qwen2": (_QWEN2_SPLIT, False),
}


def tokenizer_from_gguf(file) -> Tokenizer:
    """`file` is a models.formats.gguf.GGUFFile."""
    kind = file.get("tokenizer.ggml.model")
    tokens = file.get("tokenizer.ggml.tokens")
    if kind not in ("gpt2", "llama") or tokens is None:
        raise ValueError(f"GGUF file {file.path.name!r} has tokenizer.ggml.model {kind!r}; inferline reads "
                         f"'gpt2' (byte-level BPE) and 'llama' (SentencePiece BPE) tokenizers.")
    types = file.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    config: dict[str, Any] = {}
    for key, name in (("bos", "bos_token"), ("eos", "eos_token"), ("unknown", "unk_token"),
                      ("padding", "pad_token")):
        index = file.get(f"tokenizer.ggml.{key}_token_id")
        if index is not None and 0 <= index < len(tokens):
            config[name] = tokens[index]
    templates = _chat_templates(file)
    if templates is not None:
        config["chat_template"] = templates
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in file.get("tokenizer.ggml.merges") or []]
    if kind == "gpt2":
        backend = _byte_level(vocab, merges, file.get("tokenizer.ggml.pre"))
        add_bos, add_eos = file.get("tokenizer.ggml.add_bos_token", False), False
    else:
        prefix = file.get("tokenizer.ggml.add_space_prefix", True)
        backend = _sentencepiece(vocab, merges or _merges_from_scores(tokens, file.get("tokenizer.ggml.scores")),
                                 config.get("unk_token"), prefix)
        add_bos = file.get("tokenizer.ggml.add_bos_token", True)
    add_eos = file.get("tokenizer.ggml.add_eos_token", False)
    specials = [t for t, kind_ in zip(tokens, types) if kind_ == CONTROL]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    # user-defined tokens match the normalised text, as Hugging Face's non-special added tokens do
    backend.add_tokens([AddedToken(t, special=False, normalized=True)
                        for t, kind_ in zip(tokens, types) if kind_ == USER_DEFINED])
    backend.post_processor = _post_processor(backend, config, add_bos, add_eos, byte_level=kind == "gpt2")
    named = set(config.get(n) for n in ("bos_token", "eos_token", "unk_token", "pad_token"))
    config["additional_special_tokens"] = [t for t in specials if t not in named]
    config["add_bos_token"], config["add_eos_token"] = bool(add_bos), bool(add_eos)
    return Tokenizer(backend, config)


def _chat_templates(file):
    default = file.get("tokenizer.chat_template")
    prefix = "tokenizer.chat_template."
    named = {k[len(prefix):]: file.get(k) for k in file.keys if k.startswith(prefix)}
    if not named:
        return default
    return ([{"name": "default", "template": default}] if default is not None else []) + \
        [{"name": k, "template": v} for k, v in named.items()]


def _byte_level(vocab: dict, merges: list, pre: str | None) -> RustTokenizer:
    split, digits = PRE_TOKENIZERS.get(pre or "default", (None, False))
    if split is None:
        logger.warning("GGUF pre-tokenizer %r is not known to inferline; splitting text as GPT-2 does.", pre)
        split = _GPT2_SPLIT
    backend = RustTokenizer(models.BPE(vocab, merges, fuse_unk=False))
    steps = [pre_tokenizers.Digits(individual_digits=True)] if digits else []
    steps += [pre_tokenizers.Split(Regex(split), behavior="isolated"),
              pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    backend.pre_tokenizer = pre_tokenizers.Sequence(steps)
    if pre == "qwen2":
        backend.normalizer = normalizers.NFC()
    backend.decoder = decoders.ByteLevel()
    return backend


def _sentencepiece(vocab: dict, merges: list, unk: str | None, add_prefix: bool) -> RustTokenizer:
    backend = RustTokenizer(models.BPE(vocab, merges, unk_token=unk, byte_fallback=True, fuse_unk=True))
    steps = [normalizers.Prepend("▁")] if add_prefix else []
    backend.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
    tail = [decoders.Strip(" ", 1, 0)] if add_prefix else []
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), *tail])
    return backend


def _merges_from_scores(tokens: list[str], scores: list[float] | None) -> list[tuple[str, str]]:
    """SentencePiece BPE files without merges: every split of a token into two known tokens is a merge,
    ranked by the merged token's score (then by its parts' scores), as transformers rebuilds them."""
    if scores is None:
        raise ValueError("A 'llama' GGUF tokenizer needs tokenizer.ggml.merges or tokenizer.ggml.scores.")
    score = dict(zip(tokens, scores))
    found = []
    for token, value in score.items():
        local = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in score and token[i:] in score]
        local.sort(key=lambda pair: (score[pair[0]], score[pair[1]]), reverse=True)
        found.extend((pair, value) for pair in local)
    found.sort(key=lambda item: item[1], reverse=True)
    return [pair for pair, _ in found]


def _post_processor(backend: RustTokenizer, config: dict, add_bos: bool, add_eos: bool, byte_level: bool):
    bos = config.get("bos_token") if add_bos else None
    eos = config.get("eos_token") if add_eos else None
    if bos is None and eos is None:
        return processors.ByteLevel(trim_offsets=False) if byte_level else None
    first = [f"{bos}:0"] if bos else []
    last = [f"{eos}:0"] if eos else []
    specials = [(t, backend.token_to_id(t)) for t in dict.fromkeys(x for x in (bos, eos) if x)]
    template = processors.TemplateProcessing(
        single=" ".join(first + ["$A:0"] + last),
        pair=" ".join(first + ["$A:0"] + last + [x.replace(":0", ":1") for x in first] + ["$B:1"]
                      + [x.replace(":0", ":1") for x in last]),
        special_tokens=specials)
    return processors.Sequence([processors.ByteLevel(trim_offsets=False), template]) if byte_level else template
