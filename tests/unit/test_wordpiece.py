"""A single request's Python WordPiece (processing/wordpiece.py) against transformers' fast tokenizer."""

from __future__ import annotations

import random

import pytest

from fixtures.checkpoints import byte_bpe_tokenizer, wordpiece_tokenizer
from inferline.processing.tokenizer import Tokenizer
from inferline.processing.wordpiece import AsciiWordPiece, Encoded

WORDS = ["hello", "unbelievable", "Tokenization", "PARIS", "don't", "e-mail", "U.S.A.", "3.14159", "x" * 101,
         "supercalifragilisticexpialidocious", "qzxv", "a", "##ing", "(nested)", "~`^|\\", "state-of-the-art"]
CHARS = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,!?'\"-_()[]{}#@$%^&*+=<>/\\|~`:;\t\n\r"
FALLBACK = ["Héllo naïve café", "Tokyo 東京", "tab\x0bvertical", "nul\x00char", "Paris [MASK] France",
            "lower [mask] case", "[CLS] at the start", "emoji 🙂"]


def texts(seed: int, count: int, vocab: list[str]) -> list[str]:
    """Random ASCII, the awkward words, and the vocabulary's own words: the longest ones, glued together (so
    WordPiece has to split them) and cut short."""
    rng = random.Random(seed)
    words = [w for w in vocab if w.isascii() and w.isalnum()]
    longest = sorted(words, key=len, reverse=True)[:50]
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append("".join(rng.choice(CHARS) for _ in range(rng.randint(1, 90))))
        elif kind == 1:
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))))
        elif kind == 2:
            out.append(" ".join(rng.choice(longest) + rng.choice(words)[: rng.randint(0, 6)]
                                for _ in range(rng.randint(1, 8))))
        else:
            out.append(" ".join("".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
                                for _ in range(rng.randint(1, 8))))
    return [t for t in out if t.strip()]


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def tokenizers(request, tmp_path_factory):
    theirs = wordpiece_tokenizer("BertTokenizerFast", lower=request.param)
    folder = tmp_path_factory.mktemp("wordpiece")
    theirs.save_pretrained(str(folder))
    return Tokenizer.from_pretrained(folder), theirs


def single(ours: Tokenizer, text: str, **options):
    [[encoding]] = ours.encode_batch([text], offsets=False, **options)
    return encoding


def test_ascii_texts_take_the_fast_path_and_match_transformers(tokenizers):
    ours, theirs = tokenizers
    for text in texts(0, 800, list(theirs.get_vocab())):
        expected = theirs(text)
        got = single(ours, text)
        assert isinstance(got, Encoded), repr(text)  # printable ASCII without an added token: always taken
        assert got.ids == expected["input_ids"], repr(text)
        assert got.type_ids == expected["token_type_ids"], repr(text)
        assert got.attention_mask == expected["attention_mask"], repr(text)
        assert list(got.overflowing) == []


def test_other_texts_go_to_rust_with_its_result(tokenizers):
    ours, theirs = tokenizers
    for text in FALLBACK:
        got = single(ours, text)
        assert not isinstance(got, Encoded), repr(text)
        assert got.ids == theirs(text)["input_ids"], repr(text)


def test_truncation_beyond_the_limit_goes_to_rust(tokenizers):
    ours, theirs = tokenizers
    text = " ".join(WORDS[:6]) * 4
    got = single(ours, text, truncation=True, max_length=12)
    assert not isinstance(got, Encoded)
    assert got.ids == theirs(text, truncation=True, max_length=12)["input_ids"]
    assert got.overflowing  # what the pipelines' truncation warning reads
    short = single(ours, "short text", truncation=True, max_length=12)
    assert isinstance(short, Encoded) and short.ids == theirs("short text")["input_ids"]


def test_only_a_single_plain_text_without_offsets(tokenizers):
    ours, _ = tokenizers
    text = "Hello world!"
    assert not isinstance(ours.encode_batch([text], offsets=True)[0][0], Encoded)  # offsets are Rust's
    assert not isinstance(ours.encode_batch([text, text], offsets=False)[0][0], Encoded)  # batches too
    assert not isinstance(ours.encode_batch([text], ["a pair"], offsets=False)[0][0], Encoded)
    assert not isinstance(ours.encode_batch([text], add_special_tokens=False, offsets=False)[0][0], Encoded)


def test_no_fast_path_for_other_tokenizers(tmp_path):
    theirs = byte_bpe_tokenizer()
    theirs.save_pretrained(str(tmp_path))
    ours = Tokenizer.from_pretrained(tmp_path)
    assert AsciiWordPiece.from_backend(ours.backend) is None
    [[encoding]] = ours.encode_batch(["Hello world!"], offsets=False)
    assert encoding.ids == theirs("Hello world!")["input_ids"]
