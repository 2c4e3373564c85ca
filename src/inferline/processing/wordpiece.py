"""A single request's BERT tokenisation in Python, for the texts where it provably equals the Rust one.

A serving request is one short text. Through the Rust tokenizer its ~20 µs of work costs 45–60 µs inside a
pipeline call (the model's forward between two requests leaves its tables cold), a third of what a
request pays outside the model. `AsciiWordPiece` does the same steps for printable-ASCII text — BertNormalizer
(lower-casing; on ASCII, accents, Chinese characters and control-character cleaning change nothing),
BertPreTokenizer (split on whitespace, every punctuation mark its own word), WordPiece (greedy longest match,
"##" continuations, [UNK] for a word it cannot cover or longer than max_input_chars_per_word) and the
[CLS] $A [SEP] template — in a fraction of that. Anything else goes to Rust: non-ASCII or control
characters, text containing an added token, a sequence longer than the truncation limit, a tokenizer whose
normaliser, pre-tokeniser, model or template is not exactly that. tests/unit/test_wordpiece.py compares it
with the Rust tokenizer.
"""

from __future__ import annotations

import json
import re

_OUTSIDE = re.compile(r"[^\t\n\r -~]")  # what the fast path does not handle: non-ASCII, control characters
_WORDS = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")  # BertPreTokenizer on printable ASCII


class Encoded:
    """What the pipelines read from an Encoding of a request tokenised here (no offsets: its callers skip them)."""

    __slots__ = ("ids", "type_ids", "attention_mask")
    overflowing: tuple = ()

    def __init__(self, ids: list[int], type_ids: list[int]):
        self.ids, self.type_ids, self.attention_mask = ids, type_ids, [1] * len(ids)


class AsciiWordPiece:
    """`encode(text, max_length)` → an `Encoded` equal to the Rust backend's, or None where it cannot promise so."""

    def __init__(self, vocab: dict[str, int], unk: int, prefix: str, max_chars: int, lowercase: bool,
                 head: list[tuple[int, int]], tail: list[tuple[int, int]], added: list[str]):
        self.vocab, self.unk, self.prefix, self.max_chars, self.lowercase = vocab, unk, prefix, max_chars, lowercase
        self.head_ids, self.head_types = [i for i, _ in head], [t for _, t in head]
        self.tail_ids, self.tail_types = [i for i, _ in tail], [t for _, t in tail]
        # a text holding an added token's text (or its lower case) goes to Rust, which splits it out first
        self.added = re.compile("|".join(re.escape(t) for t in sorted(set(added), key=len, reverse=True))) \
            if added else None
        self.longest = max((len(k) - (len(prefix) if k.startswith(prefix) else 0) for k in vocab), default=0)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_backend(cls, backend) -> AsciiWordPiece | None:
        """The fast path for this `tokenizers.Tokenizer`, or None when it is not a plain BERT WordPiece."""
        try:
            state = json.loads(backend.to_str())
        except Exception:  # noqa: BLE001  (a backend that cannot describe itself gets no fast path)
            return None
        normalizer, pre, model, post = (state.get(k) or {} for k in ("normalizer", "pre_tokenizer", "model",
                                                                     "post_processor"))
        if normalizer.get("type") != "BertNormalizer" or not normalizer.get("clean_text") \
                or pre.get("type") != "BertPreTokenizer" or model.get("type") != "WordPiece" \
                or state.get("truncation") or state.get("padding"):
            return None
        vocab = model.get("vocab") or {}
        unk = vocab.get(model.get("unk_token"))
        template = _template(post)
        if unk is None or template is None:
            return None
        added = [t["content"] for t in state.get("added_tokens") or []]
        return cls(vocab, unk, model.get("continuing_subword_prefix", "##"), model.get("max_input_chars_per_word", 100),
                   bool(normalizer.get("lowercase")), *template, added + [t.lower() for t in added])

    def encode(self, text: str, max_length: int | None = None) -> Encoded | None:
        if _OUTSIDE.search(text) is not None:
            return None
        if self.lowercase:
            text = text.lower()
        if self.added is not None and self.added.search(text) is not None:
            return None
        ids, cache = list(self.head_ids), self._cache
        for word in _WORDS.findall(text):
            pieces = cache.get(word)
            if pieces is None:
                pieces = self._pieces(word)
                if len(cache) < 4096:
                    cache[word] = pieces
            ids += pieces
        ids += self.tail_ids
        if max_length is not None and len(ids) > max_length:
            return None  # Rust truncates and keeps the overflow
        body = len(ids) - len(self.head_ids) - len(self.tail_ids)
        return Encoded(ids, self.head_types + [0] * body + self.tail_types)  # $A is type 0 (`_template`)

    def _pieces(self, word: str) -> list[int]:
        """WordPiece's greedy longest-match-first split of one word; [UNK] for the whole word if a part fails."""
        if len(word) > self.max_chars:
            return [self.unk]
        pieces, start, vocab = [], 0, self.vocab
        while start < len(word):
            end = min(len(word), start + self.longest)
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                found = vocab.get(piece)
                if found is not None:
                    pieces.append(found)
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return pieces


def _template(post: dict) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
    """A single-sequence post-processor of special tokens around $A (type 0) → (ids+types before, after)."""
    if post.get("type") == "BertProcessing":
        return [(post["cls"][1], 0)], [(post["sep"][1], 0)]
    if post.get("type") != "TemplateProcessing":
        return None
    specials, parts, seen = post.get("special_tokens") or {}, ([], []), 0
    for item in post.get("single") or []:
        if "Sequence" in item:
            if item["Sequence"].get("id") != "A" or item["Sequence"].get("type_id", 0) != 0 or seen:
                return None
            seen = 1
            continue
        token = item.get("SpecialToken") or {}
        ids = (specials.get(token.get("id")) or {}).get("ids")
        if not ids:
            return None
        parts[seen].extend((i, token.get("type_id", 0)) for i in ids)
    return parts if seen else None
