"""Encoder-decoder families (T5, BART, mBART, Marian) against transformers 4.57.6: teacher-forced logits on
padded batches, incremental decoding with the KV cache (self + cross), BART's eos-pooled classification
and base heads, the SentencePiece tokenizers (T5 from spiece.model alone, Marian), save round trips, and
greedy / beam-search generation token for token."""

from __future__ import annotations

import functools
import json
import logging
import shutil

import pytest
import torch

from fixtures.checkpoints import CORPUS, build
from parity.archs import SEQ2SEQ_ARCHS as ARCHS

SOURCES = [CORPUS[0][:40], CORPUS[2], CORPUS[3][:12]]  # three lengths: the batch is right-padded
TARGETS = ["Paris is the capital of France.", "The quick brown fox jumps"]
TEXTS = ["Hello   world, Paris! <extra_id_0> héllo ﬁ café", "", "  leading and trailing  ",
         "a<extra_id_1>b</s>c <pad> x", "Ünïcödé ☃ ½ ①", CORPUS[4]]


@functools.lru_cache(maxsize=None)
def models(arch: str, head: str = "seq2seq-lm"):
    """(transformers tokenizer, transformers model, our model) for one checkpoint, loaded once."""
    import transformers

    from inferline.models.registry import load_model

    logging.getLogger("transformers").setLevel(logging.ERROR)
    path = build(arch, head)
    auto = {"seq2seq-lm": "AutoModelForSeq2SeqLM", "sequence-classification": "AutoModelForSequenceClassification",
            "base": "AutoModel"}[head]
    theirs = getattr(transformers, auto).from_pretrained(path).eval()
    return transformers.AutoTokenizer.from_pretrained(path), theirs, load_model(path, head)


def batch(arch: str):
    """Right-padded encoder inputs and full decoder inputs (start token + target tokens)."""
    tokenizer, theirs, _ = models(arch)
    enc = tokenizer(SOURCES, padding=True, return_tensors="pt")
    targets = tokenizer(text_target=TARGETS + TARGETS[:1], padding=True, return_tensors="pt").input_ids
    start = torch.full((targets.shape[0], 1), theirs.config.decoder_start_token_id)
    return enc.input_ids, enc.attention_mask, torch.cat([start, targets], 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_teacher_forced_logits(arch):
    _, theirs, ours = models(arch)
    ids, mask, decoder_ids = batch(arch)
    assert bool((mask == 0).any())  # the padded-batch path is exercised
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        torch.testing.assert_close(ours(ids, mask, decoder_ids), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_incremental_decoding_equals_full_decode(arch):
    _, _, ours = models(arch)
    ids, mask, decoder_ids = batch(arch)
    T = decoder_ids.shape[1]
    with torch.no_grad():
        encoded = ours.encode(ids, mask)
        full = ours.decode(decoder_ids, encoded, mask)
        cache = ours.new_cache(ids.shape[0], T + 2)
        steps = [ours.decode(decoder_ids[:, :3], encoded, mask, cache)]
        assert all(c is not None for c in cache.cross)  # cross keys/values computed on the first call
        steps += [ours.decode(decoder_ids[:, t:t + 1], encoded, mask, cache) for t in range(3, T)]
    assert cache.length == T
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_t5_float16_keeps_wo_in_float32_like_transformers():
    """transformers keeps T5's `wo` in float32 under float16 (not bfloat16), which turns the residual stream
    float32; we load and compute the same way. Left differences are float16 rounding in attention."""
    import transformers

    from inferline.models.registry import load_model

    path = build("t5-gated", "seq2seq-lm")
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(path, dtype=torch.float16).eval()
    ours = load_model(path, "seq2seq-lm", dtype=torch.float16)
    assert ours.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32
    assert ours.shared.weight.dtype == torch.float16
    assert load_model(path, "seq2seq-lm", dtype=torch.bfloat16).decoder.block[0].layer[2].DenseReluDense.wo \
        .weight.dtype == torch.bfloat16
    ids, mask, decoder_ids = batch("t5-gated")
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        got = ours(ids, mask, decoder_ids)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), expected.float(), atol=0.05, rtol=5e-3)


@pytest.mark.parametrize("arch", ["t5", "bart"])
def test_cache_reorder_follows_rows(arch):
    """Beam search reorders the cache (self and cross) between steps; results follow the rows."""
    _, _, ours = models(arch)
    ids, mask, decoder_ids = batch(arch)
    order = torch.tensor([2, 0, 0])
    with torch.no_grad():
        encoded = ours.encode(ids, mask)
        cache = ours.new_cache(3, decoder_ids.shape[1])
        ours.decode(decoder_ids[:, :4], encoded, mask, cache)
        cache.reorder(order)
        step = ours.decode(decoder_ids[order, 4:6], encoded[order], mask[order], cache)
        full = ours.decode(decoder_ids[order, :6], encoded[order], mask[order])
    torch.testing.assert_close(step, full[:, 4:6], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["bart", "mbart"])
@pytest.mark.parametrize("head", ["sequence-classification", "base"])
def test_bart_classification_and_base_heads(arch, head):
    """Classification pools the decoder state at each row's last eos (premise/hypothesis pairs, padded)."""
    tokenizer, theirs, ours = models(arch, head)
    enc = tokenizer(["A man is playing a guitar.", "Paris"], ["Somebody makes music.", "This is about France."],
                    padding=True, return_tensors="pt")
    with torch.no_grad():
        out = theirs(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
        expected = out.logits if head == "sequence-classification" else out.last_hidden_state
        torch.testing.assert_close(ours(enc.input_ids, enc.attention_mask), expected, atol=1e-4, rtol=1e-4)


def test_bart_classification_rejects_unequal_eos_counts_like_transformers():
    tokenizer, theirs, ours = models("bart", "sequence-classification")
    enc = tokenizer(["one </s> two", "three"], padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match="same number of <eos> tokens"):
        theirs(**enc)
    with pytest.raises(ValueError, match="same number of <eos> tokens"):
        ours(enc.input_ids, enc.attention_mask)


def test_unsupported_heads_are_clear_errors():
    from inferline.models.registry import UnsupportedModelError, load_model

    with pytest.raises(UnsupportedModelError, match="marian"):
        load_model(build("marian", "seq2seq-lm"), "sequence-classification")
    with pytest.raises(UnsupportedModelError, match="seq2seq-lm"):
        load_model(build("t5", "seq2seq-lm"), "masked-lm")


def test_config_defaults_follow_model_type():
    from inferline.models.bart import BartConfig
    from inferline.models.t5 import T5Config

    mt5 = T5Config.from_hf({"model_type": "mt5"})
    assert (mt5.is_gated_act, mt5.dense_act_fn, mt5.tie_word_embeddings, mt5.decoder_start_token_id) == \
        (True, "gelu_new", False, 0)
    t5 = T5Config.from_hf({"model_type": "t5", "num_layers": 3})
    assert (t5.num_decoder_layers, t5.decoder_start_token_id, t5.dense_act_fn) == (3, 0, "relu")
    marian = BartConfig.from_hf({"model_type": "marian"})
    assert (marian.pad_token_id, marian.eos_token_id, marian.decoder_start_token_id) == (58100, 0, 58100)
    with pytest.raises(ValueError, match="feed_forward_proj"):
        T5Config.from_hf({"model_type": "t5", "feed_forward_proj": "gelu-gated"})


@pytest.mark.parametrize("arch", ["t5-gated", "bart", "marian"])
def test_save_round_trip(arch, tmp_path):
    """Saved under the checkpoint's names (tied embeddings once), transformers reloads the same model."""
    import transformers

    from inferline.models.saving import save_model

    _, theirs, ours = models(arch)
    save_model(ours, tmp_path)
    reloaded = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    ids, mask, decoder_ids = batch(arch)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits,
                                   theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits)


# ----- tokenizers -----
@functools.lru_cache(maxsize=None)
def tokenizers(arch: str, without_tokenizer_json: bool, folder):
    import transformers

    from inferline.processing.tokenizer import Tokenizer

    path = build(arch, "seq2seq-lm")
    if without_tokenizer_json:  # what many T5 checkpoints ship: spiece.model and configs only
        shutil.copytree(path, folder, ignore=shutil.ignore_patterns("tokenizer.json", "*.safetensors"))
        path = folder
    return transformers.AutoTokenizer.from_pretrained(path), Tokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def t5_spiece_only(tmp_path_factory):
    return tokenizers("t5", True, tmp_path_factory.mktemp("t5-spiece") / "t5")


@pytest.fixture(scope="module")
def marian_tokenizers():
    return tokenizers("marian", False, None)


def assert_same_tokenization(theirs, ours, texts):
    for text in texts:
        expected = theirs(text).input_ids
        assert ours.encode(text)[0].ids == expected, text
        for skip in (False, True):
            assert ours.decode(expected, skip_special_tokens=skip) == theirs.decode(expected, skip_special_tokens=skip)
    encodings = ours.encode_batch(texts)
    assert [e[0].ids for e in encodings] == theirs(texts).input_ids


def test_t5_tokenizer_from_spiece_model_only(t5_spiece_only):
    theirs, ours = t5_spiece_only
    assert len(ours) == len(theirs) and ours.all_special_ids == theirs.all_special_ids
    assert_same_tokenization(theirs, ours, TEXTS)
    pair = ours.encode("question: where?", "context: Paris")[0].ids
    assert pair == theirs("question: where?", "context: Paris").input_ids
    long = ours.encode(CORPUS[4], truncation=True, max_length=8)[0].ids
    assert long == theirs(CORPUS[4], truncation=True, max_length=8).input_ids


@pytest.mark.parametrize("add_prefix_space,legacy", [(True, True), (True, False), (False, True)])
def test_t5_spiece_prefix_space_options(add_prefix_space, legacy, tmp_path):
    """add_prefix_space / legacy in tokenizer_config.json pick the Metaspace prepend scheme of the conversion."""
    import transformers

    from inferline.processing.tokenizer import Tokenizer

    shutil.copytree(build("t5", "seq2seq-lm"), tmp_path, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("tokenizer.json", "*.safetensors"))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.update(add_prefix_space=add_prefix_space, legacy=legacy)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    theirs, ours = transformers.AutoTokenizer.from_pretrained(tmp_path), Tokenizer.from_pretrained(tmp_path)
    assert_same_tokenization(theirs, ours, TEXTS[:4])


def test_t5_tokenizer_json_and_spiece_agree(t5_spiece_only):
    theirs, spiece = t5_spiece_only
    _, from_json = tokenizers("t5", False, None)
    for text in TEXTS:
        assert from_json.encode(text)[0].ids == spiece.encode(text)[0].ids == theirs(text).input_ids


def test_marian_tokenizer(marian_tokenizers):
    theirs, ours = marian_tokenizers
    assert type(ours).__name__ == "MarianTokenizer"
    texts = TEXTS + [">>fr<< Hello world", ">>de<<x", "x >>fr<< y", "Hello</s>world <unk>", "Hello <pad> world"]
    assert_same_tokenization(theirs, ours, texts)
    assert ours.pad_token_id == theirs.pad_token_id and ours.eos_token_id == theirs.eos_token_id
    long = ours.encode(CORPUS[4], truncation=True, max_length=8)[0]
    assert long.ids == theirs(CORPUS[4], truncation=True, max_length=8).input_ids
    assert ours.encode("Hello", "world")[0].ids == theirs("Hello", "world").input_ids
    # generated ids decode through target.spm (trained on lower-cased text here)
    target_ids = theirs(text_target="the capital of france.").input_ids
    assert ours.decode(target_ids, skip_special_tokens=True) == theirs.decode(target_ids, skip_special_tokens=True)


def test_marian_tokenizer_save_round_trip(marian_tokenizers, tmp_path):
    from inferline.processing.tokenizer import Tokenizer

    theirs, ours = marian_tokenizers
    ours.save_pretrained(tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()  # Marian checkpoints never have one
    assert Tokenizer.from_pretrained(tmp_path).encode(CORPUS[1])[0].ids == theirs(CORPUS[1]).input_ids


# ----- generation -----
GENERATE_CASES = [
    ("t5", {}),  # the checkpoint's defaults: max_length 20
    ("t5", {"num_beams": 3, "max_new_tokens": 10}),
    ("t5", {"num_beams": 4, "num_return_sequences": 2, "max_new_tokens": 8, "length_penalty": 0.5}),
    ("bart", {"max_new_tokens": 12}),
    ("bart", {"num_beams": 3, "max_new_tokens": 10}),
    ("marian", {"max_new_tokens": 12}),
]


@pytest.mark.parametrize("arch,kwargs", GENERATE_CASES, ids=str)
def test_generate_matches_transformers(arch, kwargs):
    from inferline.generation import GenerationConfig, generate

    _, theirs, ours = models(arch)
    ids, mask, _ = batch(arch)
    with torch.no_grad():
        expected = theirs.generate(input_ids=ids, attention_mask=mask, **kwargs)
        # a token the random model does emit, used as eos so that rows finish early and get padded
        eos = int(expected[0, 2])
        early = theirs.generate(input_ids=ids, attention_mask=mask, eos_token_id=eos, **kwargs)
    config = GenerationConfig.for_model(ours)
    assert torch.equal(generate(ours, ids, mask, config.update(**kwargs)), expected)
    assert torch.equal(generate(ours, ids, mask, config.update(eos_token_id=eos, **kwargs)), early)
