"""SentencePiece checkpoints without a tokenizer.json: T5's spiece.model and Marian's source/target.spm.

spiece.model becomes a `tokenizers` Unigram backend equal to what transformers 4.57.6 converts a slow T5
tokenizer into (pieces and scores + 100 <extra_id_*>, the model's precompiled normaliser, Metaspace, and
"$A </s>"). Marian has no fast tokenizer in transformers: its MarianTokenizer segments text with
source.spm at runtime and maps pieces through vocab.json. `MarianTokenizer` here does the same and feeds
the pieces as pre-split words to a WordLevel backend over vocab.json, so ids, masks, truncation and
overflow still come from `tokenizers`; decoding joins pieces with target.spm, as transformers does.
Both need the optional `sentencepiece` package (and `protobuf` to read spiece.model): pip install
inferline[sentencepiece].
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

from tokenizers import AddedToken, Regex
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from .tokenizer import Tokenizer, _token_text, clean_up_tokenization

MARIAN_FILES = ("source.spm", "target.spm", "vocab.json", "target_vocab.json")
_SPM_CONTROL, _SPM_USER_DEFINED = 3, 4  # ModelProto.SentencePiece.Type values
_UNIGRAM = 1  # TrainerSpec.ModelType


def _require_sentencepiece(what: str):
    try:
        import sentencepiece
    except ImportError:
        raise ImportError(f"{what} needs the `sentencepiece` package: pip install 'inferline[sentencepiece]'.") \
            from None
    return sentencepiece


def read_model_proto(path: Path):
    """The SentencePiece ModelProto in `path` (pieces, scores, trainer and normaliser specs)."""
    _require_sentencepiece(f"Reading {path.name}")
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:  # the generated module needs protobuf
        raise ImportError(f"Reading {path.name} needs `protobuf`: pip install 'inferline[sentencepiece]'.") from None
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    return proto


def t5_backend(spiece: Path, config: dict[str, Any]) -> RustTokenizer:
    """spiece.model → the backend transformers' T5TokenizerFast builds from it (T5Converter)."""
    tokenizer_class = str(config.get("tokenizer_class") or "T5Tokenizer")
    if not tokenizer_class.startswith(("T5Tokenizer", "MT5Tokenizer")):
        raise OSError(f"{spiece.parent} has spiece.model but no tokenizer.json, and inferline converts spiece.model "
                      f"only for T5 tokenizers (tokenizer_class {tokenizer_class!r}). Save a tokenizer.json with "
                      f"transformers' tokenizer.save_pretrained().")
    proto = read_model_proto(spiece)
    if proto.trainer_spec.model_type != _UNIGRAM:
        raise OSError(f"{spiece} is not a Unigram SentencePiece model; only Unigram (T5's) is converted.")
    extra_ids = int(config.get("extra_ids", 100))
    vocab = [(p.piece, p.score) for p in proto.pieces]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(extra_ids))]  # appended last-id-first
    backend = RustTokenizer(models.Unigram(vocab, unk_id=proto.trainer_spec.unk_id, byte_fallback=False))
    # control pieces are special added tokens, user-defined ones plain added tokens (in id order)
    backend.add_tokens([AddedToken(p.piece, normalized=False, special=p.type == _SPM_CONTROL)
                        for p in proto.pieces if p.type in (_SPM_CONTROL, _SPM_USER_DEFINED)])
    steps = [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), "▁")]
    charsmap = proto.normalizer_spec.precompiled_charsmap
    backend.normalizer = normalizers.Sequence(([normalizers.Precompiled(charsmap)] if charsmap else []) + steps)
    # T5TokenizerFast hands add_prefix_space (None unless configured) to the conversion: falsy → "never".
    if config.get("add_prefix_space"):
        scheme = "always" if config.get("legacy", True) is not False else "first"
    else:
        scheme = "never"
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"],
        special_tokens=[("</s>", backend.token_to_id("</s>"))])
    config.setdefault("eos_token", "</s>")
    config.setdefault("unk_token", "<unk>")
    config.setdefault("pad_token", "<pad>")
    if not config.get("additional_special_tokens"):
        config["additional_special_tokens"] = [f"<extra_id_{i}>" for i in range(extra_ids)]
    add_configured_tokens(backend, config)
    return backend


def add_configured_tokens(backend: RustTokenizer, config: dict[str, Any]) -> None:
    """Add tokenizer_config.json's `added_tokens_decoder` with their strip/normalise flags, as fast
    tokenizers do when built from slow files."""
    entries = config.get("added_tokens_decoder") or {}
    tokens = [AddedToken(e["content"], single_word=e.get("single_word", False), lstrip=e.get("lstrip", False),
                         rstrip=e.get("rstrip", False), normalized=e.get("normalized", True),
                         special=e.get("special", False))
              for _, e in sorted(entries.items(), key=lambda kv: int(kv[0]))]
    if tokens:
        backend.add_tokens(tokens)


class MarianTokenizer(Tokenizer):
    """transformers' MarianTokenizer: source.spm pieces → vocab.json ids + "</s>"; decoding via target.spm.

    Same encode/decode surface as Tokenizer. Texts are split on added tokens first (as slow tokenizers do),
    a leading language code (">>fr<<") is kept whole, and the rest goes through source.spm; the pieces
    reach the backend pre-split, so offsets are per piece, not per character (transformers offers none).
    """

    def __init__(self, folder: Path, config: dict[str, Any]):
        sentencepiece = _require_sentencepiece("The Marian tokenizer (source.spm)")
        folder = Path(folder)
        for name, default in (("unk_token", "<unk>"), ("eos_token", "</s>"), ("pad_token", "<pad>")):
            config.setdefault(name, default)
        config.setdefault("model_max_length", 512)
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        unk, eos = _token_text(config["unk_token"]), _token_text(config["eos_token"])
        if unk not in vocab:
            raise OSError(f"{folder / 'vocab.json'} has no unknown token {unk!r}.")
        backend = RustTokenizer(models.WordLevel(vocab, unk_token=unk))
        backend.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A $B {eos}", special_tokens=[(eos, vocab[eos])])
        add_configured_tokens(backend, config)
        super().__init__(backend, config)
        self.folder = folder
        self.source = sentencepiece.SentencePieceProcessor(model_file=str(folder / "source.spm"))
        self.target = sentencepiece.SentencePieceProcessor(model_file=str(folder / "target.spm"))
        decode_vocab = vocab
        if config.get("separate_vocabs") and (folder / "target_vocab.json").is_file():
            decode_vocab = json.loads((folder / "target_vocab.json").read_text(encoding="utf-8"))
        self.id_to_token = {i: t for t, i in decode_vocab.items()}
        self.added = {t.content: t for t in backend.get_added_tokens_decoder().values()}
        alternatives = sorted(self.added, key=len, reverse=True)  # longest match first, as the trie
        self._added_pattern = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")") if alternatives else None

    # ----- encoding -----
    def pieces(self, text: str) -> list[str]:
        """Text → Marian tokens: added tokens kept whole, language codes split off, the rest via source.spm."""
        chunks = self._added_pattern.split(text) if self._added_pattern else [text]
        for i, chunk in enumerate(chunks):  # honour lstrip/rstrip of added tokens, as slow tokenizers
            token = self.added.get(chunk) if i % 2 else None
            if token is not None and token.rstrip and i + 1 < len(chunks):
                chunks[i + 1] = chunks[i + 1].lstrip()
            if token is not None and token.lstrip and i > 0:
                chunks[i - 1] = chunks[i - 1].rstrip()
        out: list[str] = []
        for i, chunk in enumerate(chunks):
            if not chunk:
                continue
            if i % 2:
                out.append(chunk)
                continue
            if chunk.startswith(">>") and (end := chunk.find("<<")) != -1:
                out.append(chunk[: end + 2])
                chunk = chunk[end + 2:]
            out.extend(self.source.encode(chunk, out_type=str))
        return out

    def _words(self, item, is_split_into_words: bool) -> list[str]:
        if is_split_into_words:
            return [piece for word in item for piece in self.pieces(word)]
        return self.pieces(item)

    def encode_batch(self, texts: list, text_pairs: list | None = None, *, is_split_into_words: bool = False,
                     **kwargs):
        words = [self._words(t, is_split_into_words) for t in texts]
        pairs = None if text_pairs is None else [self._words(t, is_split_into_words) for t in text_pairs]
        return super().encode_batch(words, pairs, is_split_into_words=True, **kwargs)

    # ----- decoding -----
    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self.id_to_token.get(ids, self.unk_token)
        return [self.id_to_token.get(int(i), self.unk_token) for i in ids]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Runs of pieces through target.spm; special tokens verbatim, each followed by a space."""
        specials = set(self.all_special_tokens)
        out, run = "", []
        for token in tokens:
            if token in specials:
                out += self.target.decode_pieces(run) + token + " "
                run = []
            else:
                run.append(token)
        out += self.target.decode_pieces(run)
        return out.replace("▁", " ").strip()

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            special_ids = set(self.all_special_ids)
            ids = [i for i in ids if i not in special_ids]
        text = self.convert_tokens_to_string(self.convert_ids_to_tokens(ids))
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def save_pretrained(self, folder: str | Path) -> None:
        """The checkpoint's own files (spm models, vocab, configs): there is no tokenizer.json for Marian."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in (*MARIAN_FILES, "tokenizer_config.json", "special_tokens_map.json"):
            source = self.folder / name
            if source.is_file() and source.resolve() != (folder / name).resolve():
                shutil.copyfile(source, folder / name)
