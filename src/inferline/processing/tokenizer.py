"""One Tokenizer over the Rust `tokenizers` library, built from whatever files the checkpoint has.

tokenizer.json is used as is; a lone vocab.txt becomes a WordPiece (BERT) tokenizer and
vocab.json + merges.txt a byte-level BPE one, as transformers' slow→fast conversion would build them.
tokenizer_config.json / special_tokens_map.json supply special tokens, lower-casing, model_max_length,
padding side and decode clean-up. The Rust backend is never changed after construction, so threads
encode and decode at once without a lock: each truncation setting gets its own copy of the backend
(made once), instead of switching the shared one's settings per call ("Already borrowed").
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterable

from tokenizers import AddedToken, Encoding
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from .chat_template import as_templates, load_chat_template, render_chat, select_template
from .wordpiece import AsciiWordPiece

VERY_LARGE_INTEGER = int(1e30)
_UNBUILT = object()
_MAX_TRUNCATING_BACKENDS = 8  # transformers' "no limit" model_max_length
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# tokenizer_config.json keys a caller may override when loading (each changes what this class does).
CONFIG_OVERRIDES = (*SPECIAL_TOKEN_NAMES, "additional_special_tokens", "model_max_length", "padding_side",
                    "truncation_side", "clean_up_tokenization_spaces", "chat_template", "do_lower_case",
                    "strip_accents", "tokenize_chinese_chars")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "vocab.json", "merges.txt", "added_tokens.json", "spiece.model", "source.spm")


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class Tokenizer:
    """Text ⇄ token ids with transformers' semantics, over a `tokenizers.Tokenizer` backend."""

    def __init__(self, backend: RustTokenizer, config: dict[str, Any] | None = None):
        config = dict(config or {})
        self.backend = backend
        self.backend.no_truncation()
        self.backend.no_padding()
        self.config = config
        self._lock = threading.Lock()  # guards the cache of truncating backends, not encoding
        self._truncating: dict[tuple, RustTokenizer] = {}
        self._ascii_words: AsciiWordPiece | None | object = _UNBUILT  # a single request's fast path, made on first use
        self.special_tokens: dict[str, str] = {}
        for name in SPECIAL_TOKEN_NAMES:
            text = _token_text(config.get(name))
            if text is not None:
                self.special_tokens[name] = text
        extra = [_token_text(t) for t in config.get("additional_special_tokens") or []]
        self.additional_special_tokens = [t for t in extra if t]
        max_len = config.get("model_max_length")
        self.model_max_length = int(max_len) if isinstance(max_len, (int, float)) and max_len < VERY_LARGE_INTEGER \
            else VERY_LARGE_INTEGER
        self.padding_side = config.get("padding_side", "right")
        self.truncation_side = config.get("truncation_side", "right")
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        self.chat_template = as_templates(config.get("chat_template"))  # str, {name: str} or None
        # Special tokens must never be split, whatever file they came from.
        new_specials = [t for t in self.all_special_tokens if not self._is_added(t)]
        if new_specials:
            self.backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in new_specials])

    def _is_added(self, token: str) -> bool:
        return any(t.content == token for t in self.backend.get_added_tokens_decoder().values())

    # ----- construction -----
    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides) -> "Tokenizer":
        """Build from a checkpoint folder; `overrides` (e.g. model_max_length=256, padding_side="left") win over
        tokenizer_config.json, as keyword arguments to transformers' `from_pretrained` do."""
        folder = Path(folder)
        unknown = sorted(set(overrides) - set(CONFIG_OVERRIDES))
        if unknown:
            raise ValueError(f"Unsupported tokenizer option(s) {unknown}; inferline's tokenizer takes "
                             f"{', '.join(CONFIG_OVERRIDES)}.")
        config = _read_json(folder / "special_tokens_map.json")
        config.update(_read_json(folder / "tokenizer_config.json"))
        config.update(overrides)
        if (template := load_chat_template(folder, config)) is not None:
            config["chat_template"] = template
        if (folder / "tokenizer.json").is_file():
            backend = RustTokenizer.from_file(str(folder / "tokenizer.json"))
            _apply_config_overrides(backend, config)
        elif str(config.get("tokenizer_class", "")).startswith("Wav2Vec2CTC"):
            from .ctc import CTCTokenizer  # a character vocabulary decoded frame by frame

            return CTCTokenizer(folder, config)
        elif (folder / "source.spm").is_file() and (folder / "vocab.json").is_file():
            from .sentencepiece import MarianTokenizer  # optional `sentencepiece` dependency

            return MarianTokenizer(folder, config)
        elif (folder / "spiece.model").is_file():
            from .sentencepiece import t5_backend

            backend = t5_backend(folder / "spiece.model", config)
        elif (folder / "vocab.txt").is_file():
            backend = _wordpiece_from_vocab(folder / "vocab.txt", config)
        elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            backend = _byte_bpe_from_files(folder / "vocab.json", folder / "merges.txt", config)
        else:
            raise OSError(
                f"No tokenizer files in {str(folder)!r}: expected tokenizer.json, vocab.txt (WordPiece), "
                f"vocab.json + merges.txt (byte-level BPE), spiece.model (T5) or source.spm + vocab.json (Marian). Files present: {sorted(p.name for p in folder.iterdir())}.")
        added = _read_json(folder / "added_tokens.json")
        if added and not (folder / "tokenizer.json").is_file():
            backend.add_tokens([t for t, _ in sorted(added.items(), key=lambda kv: kv[1])])
        return cls(backend, config)

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(folder / "tokenizer.json"))
        config = {k: v for k, v in self.config.items() if k != "added_tokens_decoder"}
        config.update(self.special_tokens)
        config["model_max_length"] = self.model_max_length
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
        (folder / "special_tokens_map.json").write_text(json.dumps(self.special_tokens, indent=2))

    # ----- special tokens and vocabulary -----
    def __getattr__(self, name: str):
        # bos_token, mask_token_id, ... resolved from the special-token table.
        if name.endswith("_token_id") and name[:-3] in SPECIAL_TOKEN_NAMES:
            token = self.__dict__.get("special_tokens", {}).get(name[:-3])
            return None if token is None else self.backend.token_to_id(token)
        if name in SPECIAL_TOKEN_NAMES:
            return self.__dict__.get("special_tokens", {}).get(name)
        raise AttributeError(name)

    @property
    def all_special_tokens(self) -> list[str]:
        seen = []
        for t in [*self.special_tokens.values(), *self.additional_special_tokens]:
            if t not in seen:
                seen.append(t)
        return seen

    @property
    def all_special_ids(self) -> list[int]:
        ids = (self.backend.token_to_id(t) for t in self.all_special_tokens)
        return [i for i in ids if i is not None]

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | list[str]):
        if isinstance(tokens, str):
            found = self.backend.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int]):
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Tokens → text through the backend's decoder (space-joined without one), as fast tokenizers do."""
        decoder = self.backend.decoder
        return decoder.decode(list(tokens)) if decoder is not None else " ".join(tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.backend.num_special_tokens_to_add(pair)

    @property
    def subword_prefix(self) -> str | None:
        """The mark a vocabulary puts on tokens that continue a word ("##" for WordPiece), or None when its
        tokens carry no such mark (byte-level BPE, SentencePiece): then a token's word boundaries are unknown."""
        return getattr(self.backend.model, "continuing_subword_prefix", None) or None

    # ----- encoding -----
    def encode(self, text, text_pair=None, *, add_special_tokens: bool = True, truncation: bool | str = False,
               max_length: int | None = None, stride: int = 0, return_overflowing_tokens: bool = False,
               is_split_into_words: bool = False) -> list[Encoding]:
        """Encode one text (or pair). Returns [main] plus, with `return_overflowing_tokens`, one
        encoding per overflowing window (stride = tokens shared by consecutive windows)."""
        return self.encode_batch([text], [text_pair] if text_pair is not None else None,
                                 add_special_tokens=add_special_tokens, truncation=truncation,
                                 max_length=max_length, stride=stride,
                                 return_overflowing_tokens=return_overflowing_tokens,
                                 is_split_into_words=is_split_into_words)[0]

    def encode_batch(self, texts: list, text_pairs: list | None = None, *, add_special_tokens: bool = True,
                     truncation: bool | str = False, max_length: int | None = None, stride: int = 0,
                     return_overflowing_tokens: bool = False, is_split_into_words: bool = False,
                     offsets: bool = True) -> list[list[Encoding]]:
        """offsets=False: the encodings' character offsets are left at zero (the Rust tokenizer skips tracking
        them, ~15% faster), for callers that read only ids, masks and type ids: a single text may then come back
        from `AsciiWordPiece` (processing/wordpiece.py) as an `Encoded`, with only those and `overflowing`."""
        inputs = list(texts) if text_pairs is None else \
            [text if pair is None else (text, pair) for text, pair in zip(texts, text_pairs)]
        strategy = truncation_strategy(truncation)
        if strategy is not None and max_length is None:
            max_length = self.model_max_length if self.model_max_length < VERY_LARGE_INTEGER else None
        if len(inputs) == 1 and not offsets and add_special_tokens and not is_split_into_words \
                and not return_overflowing_tokens and isinstance(inputs[0], str):
            fast = self._ascii_words if self._ascii_words is not _UNBUILT else self._build_ascii_words()
            encoded = None if fast is None else fast.encode(inputs[0], max_length if strategy else None)
            if encoded is not None:
                return [[encoded]]
        backend = self.backend if strategy is None or max_length is None else \
            self._truncating_backend(max_length, stride, strategy)
        try:
            encode = backend.encode_batch if offsets else getattr(backend, "encode_batch_fast", backend.encode_batch)
            encodings = encode(inputs, is_pretokenized=is_split_into_words, add_special_tokens=add_special_tokens)
        except TypeError:  # the Rust message names no input: say which one and why
            _explain_bad_input(inputs, is_split_into_words)
            raise
        except Exception as error:  # the Rust tokenizer raises a bare Exception when a side is too short to cut
            if "truncate" not in str(error):
                raise
            raise ValueError(f"truncation={truncation!r} with max_length={max_length}: the sequence it truncates is "
                             f"too short to lose enough tokens ({error}); use truncation=True (longest_first) or a "
                             f"larger max_length.") from None
        if return_overflowing_tokens:
            return [[e, *e.overflowing] for e in encodings]
        return [[e] for e in encodings]

    def _build_ascii_words(self) -> AsciiWordPiece | None:
        self._ascii_words = AsciiWordPiece.from_backend(self.backend)
        return self._ascii_words

    def _truncating_backend(self, max_length: int, stride: int, strategy: str) -> RustTokenizer:
        """A copy of the backend that truncates with these settings, made on first use and kept (a few at most)."""
        key = (max_length, stride, strategy, self.truncation_side)
        backend = self._truncating.get(key)
        if backend is None:
            backend = RustTokenizer.from_str(self.backend.to_str())
            backend.enable_truncation(max_length, stride=stride, strategy=strategy, direction=self.truncation_side)
            with self._lock:
                if len(self._truncating) >= _MAX_TRUNCATING_BACKENDS:
                    self._truncating.pop(next(iter(self._truncating)))  # the oldest setting
                backend = self._truncating.setdefault(key, backend)
        return backend

    def apply_chat_template(self, conversation, add_generation_prompt: bool = False,
                            continue_final_message: bool = False, tokenize: bool = False,
                            chat_template: str | None = None, tools: list | None = None,
                            documents: list | None = None, **template_kwargs) -> str | list[int]:
        """Format chat messages with the model's template (processing/chat_template.py): the prompt text,
        or its token ids with `tokenize=True` (no special tokens added: the template holds them)."""
        template = select_template(self.chat_template, chat_template, tools)
        variables = {**self.special_tokens_map, **template_kwargs}
        text = render_chat(template, conversation, add_generation_prompt, continue_final_message, tools=tools,
                           documents=documents, **variables)
        return self.encode(text, add_special_tokens=False)[0].ids if tokenize else text

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        """Special token name → text (and additional_special_tokens → list), as transformers' attribute."""
        out: dict[str, Any] = dict(self.special_tokens)
        if self.additional_special_tokens:
            out["additional_special_tokens"] = list(self.additional_special_tokens)
        return out

    # ----- language codes (mBART, mBART-50, NLLB): the source code sits in the special-token template -----
    @property
    def language_codes(self) -> list[str]:
        """A multilingual tokenizer's language codes (its tokenizer_config.json names a src_lang), else []."""
        return list(self.additional_special_tokens) if "src_lang" in self.config else []

    def for_source_language(self, src_lang: str) -> "Tokenizer":
        """This tokenizer marking inputs as `src_lang` (what transformers' `tokenizer.src_lang = ...` does): the
        language code in the post-processor template is swapped. A copy, cached per language; self is unchanged."""
        cache = self.__dict__.setdefault("_by_source_language", {})
        if src_lang not in cache:
            state = json.loads(self.backend.to_str())
            codes = set(self.language_codes)
            new_id = self.backend.token_to_id(src_lang)
            new_id = self.unk_token_id if new_id is None else new_id  # an unknown code encodes as unk, as there
            if new_id is None:
                raise ValueError(f"Unknown language code {src_lang!r}; known: {', '.join(self.language_codes)}.")
            for template in _template_processors(state.get("post_processor")):
                for key in ("single", "pair"):
                    for piece in template.get(key) or []:
                        if piece.get("SpecialToken", {}).get("id") in codes:
                            piece["SpecialToken"]["id"] = src_lang
                specials = {k: v for k, v in template.get("special_tokens", {}).items() if k not in codes}
                template["special_tokens"] = {**specials, src_lang: {"id": src_lang, "ids": [new_id],
                                                                     "tokens": [src_lang]}}
            backend = RustTokenizer.from_str(json.dumps(state))
            cache[src_lang] = Tokenizer(backend, {**self.config, "src_lang": src_lang})
        return cache[src_lang]

    # ----- decoding -----
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        ids = [int(i) for i in ids]
        text = self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={len(self)}, model_max_length={self.model_max_length}, " \
               f"special_tokens={self.special_tokens})"


def _explain_bad_input(inputs: list, is_split_into_words: bool) -> None:
    """Raise a TypeError/ValueError naming the first input the Rust tokenizer cannot take (if one is found)."""
    for index, item in enumerate(inputs):
        for text in (item if isinstance(item, tuple) else (item,)):
            pieces = text if is_split_into_words and isinstance(text, (list, tuple)) else [text]
            for piece in pieces:
                if not isinstance(piece, str):
                    kind = "a string or a list of strings (is_split_into_words)" if is_split_into_words else "a string"
                    raise TypeError(f"Text to tokenise must be {kind}; input {index} holds {type(piece).__name__}: "
                                    f"{piece!r:.60}.")
                bad = next((i for i, c in enumerate(piece) if "\ud800" <= c <= "\udfff"), None)
                if bad is not None:
                    raise ValueError(f"Input {index} holds a lone surrogate (U+{ord(piece[bad]):04X}) at character {bad}, "
                                     f"which is not valid Unicode text; remove it (or decode bytes with "
                                     f"errors='replace').")


def clean_up_tokenization(text: str) -> str:
    """transformers' clean-up of spaces before punctuation and English contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


def truncation_strategy(truncation: bool | str | None) -> str | None:
    if truncation is None or truncation is False or truncation == "do_not_truncate":
        return None
    if truncation is True:
        return "longest_first"
    if truncation in ("longest_first", "only_first", "only_second"):
        return truncation
    raise ValueError(f"`truncation` must be a bool or one of 'longest_first', 'only_first', 'only_second', "
                     f"'do_not_truncate'; got {truncation!r}.")


def _apply_config_overrides(backend: RustTokenizer, config: dict) -> None:
    """tokenizer_config.json wins over tokenizer.json for BERT normaliser options (as BertTokenizerFast)."""
    state = json.loads(backend.normalizer.__getstate__()) if backend.normalizer is not None else {}
    if state.get("type") != "BertNormalizer":
        return
    wanted = {"lowercase": config.get("do_lower_case", state.get("lowercase")),
              "strip_accents": config.get("strip_accents", state.get("strip_accents")),
              "handle_chinese_chars": config.get("tokenize_chinese_chars", state.get("handle_chinese_chars"))}
    if any(state.get(k) != v for k, v in wanted.items()):
        backend.normalizer = normalizers.BertNormalizer(clean_text=state.get("clean_text", True), **wanted)


def _wordpiece_from_vocab(vocab_file: Path, config: dict) -> RustTokenizer:
    vocab = {}
    for index, line in enumerate(vocab_file.read_text(encoding="utf-8").splitlines()):
        vocab.setdefault(line.rstrip("\n"), index)
    unk = _token_text(config.get("unk_token")) or "[UNK]"
    config.setdefault("unk_token", unk)
    for name, default in (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"),
                          ("mask_token", "[MASK]")):
        config.setdefault(name, default)
    backend = RustTokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"), lowercase=config.get("do_lower_case", True))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    cls, sep = _token_text(config["cls_token"]), _token_text(config["sep_token"])
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    return backend


def _byte_bpe_from_files(vocab_file: Path, merges_file: Path, config: dict) -> RustTokenizer:
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in merges_file.read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#version")]
    add_prefix_space = bool(config.get("add_prefix_space", False))
    backend = RustTokenizer(models.BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="",
                                       fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    backend.decoder = decoders.ByteLevel()
    tokenizer_class = str(config.get("tokenizer_class", ""))
    if tokenizer_class.startswith(("Roberta", "Bart", "Longformer", "XLMRoberta", "Camembert")):
        for name, default in (("bos_token", "<s>"), ("eos_token", "</s>"), ("sep_token", "</s>"),
                              ("cls_token", "<s>"), ("unk_token", "<unk>"), ("pad_token", "<pad>"),
                              ("mask_token", "<mask>")):
            config.setdefault(name, default)
        sep, cls = _token_text(config["sep_token"]), _token_text(config["cls_token"])
        backend.post_processor = processors.RobertaProcessing(
            (sep, vocab[sep]), (cls, vocab[cls]), trim_offsets=config.get("trim_offsets", True),
            add_prefix_space=add_prefix_space)
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return backend


def _template_processors(state: dict | None) -> list[dict]:
    """The TemplateProcessing entries of a serialised post-processor (itself, or inside a Sequence)."""
    if not state:
        return []
    if state.get("type") == "Sequence":
        return [p for inner in state.get("processors", []) for p in _template_processors(inner)]
    return [state] if state.get("type") == "TemplateProcessing" else []
