"""Our Tokenizer against transformers' fast tokenizers, from each kind of tokenizer file."""

from __future__ import annotations

import shutil

import pytest

from inferline.processing.tokenizer import Tokenizer

TEXTS = ["Hello world!", "Don't worry, be HAPPY.  Héllo   naïve café", "Paris [MASK] France", "a",
         "The Amazon rainforest covers much of the Amazon basin of South America."]
PAIRS = [("Where do you live?", "I live in London, near the river Thames.")]


def only_files(tmp_path, source, names):
    target = tmp_path / "tok"
    target.mkdir()
    for name in names:
        if (source / name).exists():
            shutil.copy(source / name, target / name)
    return target


def reference(path):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(path))


@pytest.mark.parametrize("arch, files", [
    ("bert", ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")),
    ("bert", ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")),
    ("roberta", ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")),
    ("roberta", ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")),
])
def test_encodings_match_transformers(tmp_path, checkpoint, arch, files):
    source = checkpoint(arch, "base")
    folder = only_files(tmp_path, source, files)
    ours, theirs = Tokenizer.from_pretrained(folder), reference(source)
    for text in TEXTS:
        expected = theirs(text, return_offsets_mapping=True)
        got = ours.encode(text)[0]
        assert got.ids == expected["input_ids"], text
        assert got.offsets == [tuple(o) for o in expected["offset_mapping"]], text
        assert ours.decode(got.ids, skip_special_tokens=True) == theirs.decode(expected["input_ids"],
                                                                                 skip_special_tokens=True)
    for a, b in PAIRS:
        expected = theirs(a, b)
        got = ours.encode(a, b)[0]
        assert got.ids == expected["input_ids"]
        if "token_type_ids" in expected:
            assert got.type_ids == expected["token_type_ids"]
    assert ours.mask_token == theirs.mask_token and ours.mask_token_id == theirs.mask_token_id
    assert ours.pad_token_id == theirs.pad_token_id and ours.model_max_length == theirs.model_max_length


def test_pair_truncation_with_stride_and_overflow(checkpoint):
    source = checkpoint("bert", "base")
    ours, theirs = Tokenizer.from_pretrained(source), reference(source)
    question, context = PAIRS[0][0], " ".join(TEXTS) * 3
    expected = theirs(question, context, truncation="only_second", max_length=24, stride=6,
                      return_overflowing_tokens=True, return_offsets_mapping=True)
    got = ours.encode(question, context, truncation="only_second", max_length=24, stride=6,
                      return_overflowing_tokens=True)
    assert [e.ids for e in got] == expected["input_ids"]
    assert [e.offsets for e in got] == [[tuple(o) for o in m] for m in expected["offset_mapping"]]


def test_lower_casing_follows_tokenizer_config(tmp_path, checkpoint):
    import json

    source = checkpoint("bert", "base")
    folder = only_files(tmp_path, source, ("vocab.txt", "tokenizer_config.json"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["do_lower_case"] = False
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    cased = Tokenizer.from_pretrained(folder)
    assert cased.encode("Paris")[0].tokens != Tokenizer.from_pretrained(source).encode("Paris")[0].tokens


def test_no_tokenizer_files_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="No tokenizer files"):
        Tokenizer.from_pretrained(tmp_path)


def test_save_and_reload(tmp_path, checkpoint):
    ours = Tokenizer.from_pretrained(checkpoint("roberta", "base"))
    ours.save_pretrained(tmp_path / "saved")
    again = Tokenizer.from_pretrained(tmp_path / "saved")
    assert again.encode(TEXTS[1])[0].ids == ours.encode(TEXTS[1])[0].ids
    assert again.special_tokens == ours.special_tokens


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_encodings_without_offsets_match_transformers(checkpoint, arch):
    """offsets=False (text-classification, feature-extraction) skips offset tracking, nothing else: the
    same ids, masks and type ids as transformers, truncated or not."""
    source = checkpoint(arch, "base")
    ours, theirs = Tokenizer.from_pretrained(source), reference(source)
    firsts, seconds = [a for a, _ in PAIRS] + TEXTS, [b for _, b in PAIRS] + [None] * len(TEXTS)
    for options in ({}, {"truncation": True, "max_length": 6}):
        got = [e[0] for e in ours.encode_batch(firsts, seconds, offsets=False, **options)]
        for encoding, a, b in zip(got, firsts, seconds):
            expected = theirs(a, b, **options)
            assert encoding.ids == expected["input_ids"], (a, options)
            assert encoding.attention_mask == expected["attention_mask"], (a, options)
            if "token_type_ids" in expected:
                assert encoding.type_ids == expected["token_type_ids"], (a, options)
