"""Decoder-only model parity with transformers 4.57.6: the Llama-like families (llama, mistral, qwen2, qwen3,
phi3), their tokenizers, left padding and the KV cache. One table of (arch, config overrides) cases."""

from __future__ import annotations

import functools
import logging

import pytest
import torch

from fixtures.checkpoints import build
from fixtures.inputs import left_padded
from parity.archs import DECODER_ARCHS
from parity.compare import assert_same

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
# case id → (arch, config overrides): each row reaches a configuration the others do not.
CASES = {
    "llama": ("llama", {}),
    "llama-llama3rope-bias-tied": ("llama", dict(rope_scaling=LLAMA3_ROPE, attention_bias=True, mlp_bias=True,
                                                 tie_word_embeddings=True, rope_theta=500000.0)),
    "llama-rope-linear": ("llama", dict(rope_scaling={"rope_type": "linear", "factor": 2.0})),
    # dynamic NTK only acts past max_position_embeddings: 16 here, shorter than the texts
    "llama-rope-dynamic": ("llama", dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0},
                                         max_position_embeddings=16)),
    "qwen2-rope-yarn": ("qwen2", dict(rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                    "original_max_position_embeddings": 64})),
    "llama-rope-yarn-beta": ("llama", dict(rope_scaling={"rope_type": "yarn", "factor": 2.0, "beta_fast": 16.0,
                                                             "beta_slow": 2.0, "mscale": 1.2, "mscale_all_dim": 1.0, "truncate": False,
                                                             "original_max_position_embeddings": 32})),
    "mistral-window8": ("mistral", {}),
    "qwen2-tied": ("qwen2", {}),
    # Qwen's sliding window: only with use_sliding_window, and only on layers listed as sliding
    "qwen2-sliding": ("qwen2", dict(use_sliding_window=True, sliding_window=6, max_window_layers=1,
                                    layer_types=["full_attention", "sliding_attention"])),
    "qwen3-qknorm-headdim16": ("qwen3", {}),
    "phi3-partial-rotary": ("phi3", {}),
    "phi3-longrope-window": ("phi3", dict(rope_scaling={"type": "longrope", "short_factor": [1.0, 1.5],
                                                        "long_factor": [2.0, 3.5]},
                                          original_max_position_embeddings=16, sliding_window=7)),
}
# every Llama-like decoder of the shared table has a row (GPT-2's own model tests are tests/test_generation_models.py)
assert {arch for arch, _ in CASES.values()} == set(DECODER_ARCHS) - {"gpt2"}
# Dynamic NTK scales the frequencies by the longest row seen in the forward, in transformers too: a row alone, or a
# token decoded after a shorter prefill, sees other frequencies than the full padded batch. Compared with
# transformers on the full forward, the padded batch and generate (which decodes as ours does).
LENGTH_DEPENDENT = {"llama-rope-dynamic"}
TOKENIZER_ARCHS = ["llama", "qwen2"]  # the two tokenizer kinds the fixtures build (SentencePiece-like, byte-level)
TEXTS = ["Hugging Face is a company based in New York City and Paris. Its headquarters are in Manhattan.",
         "The quick brown fox jumps over the lazy dog.",
         "Paris is the capital and most populous city of France, and so on."]


@functools.lru_cache(maxsize=None)
def models(case: str):
    """(path, transformers tokenizer, transformers model, our model) for one case, built once."""
    import transformers

    from inferline.models.registry import load_model

    logging.getLogger("transformers").setLevel(logging.ERROR)
    arch, overrides = CASES[case]
    path = build(arch, "causal-lm", **overrides)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    return path, transformers.AutoTokenizer.from_pretrained(path), theirs, load_model(path, "causal-lm")


def reference_logits(model, ids, mask) -> torch.Tensor:
    # transformers' forward numbers positions 0..T-1 whatever the padding; generate() passes these instead
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits


@pytest.mark.parametrize("case", CASES)
def test_full_forward(case):
    path, tokenizer, theirs, ours = models(case)
    ids = tokenizer(TEXTS[0], return_tensors="pt").input_ids
    assert ids.shape[1] > 16  # longer than every sliding window and longrope's original length
    with torch.inference_mode():
        assert_same(ours(ids), theirs(ids).logits)


@pytest.mark.parametrize("case", ["llama", "qwen2-tied", "qwen3-qknorm-headdim16", "phi3-partial-rotary"])
def test_base_head_from_causal_lm_checkpoint(case):
    import transformers

    from inferline.models.registry import load_model

    path, tokenizer, _, _ = models(case)
    ids = tokenizer(TEXTS[1], return_tensors="pt").input_ids
    base = transformers.AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        assert_same(load_model(path, "base")(ids), base(ids).last_hidden_state)


@pytest.mark.parametrize("case", CASES)
def test_left_padded_batch(case):
    path, tokenizer, theirs, ours = models(case)
    ids, mask = left_padded(tokenizer, TEXTS)
    with torch.inference_mode():
        got = ours(ids, mask)
    expected = reference_logits(theirs, ids, mask)
    real = mask.bool()
    assert_same(got[real], expected[real])
    for row, text in enumerate(TEXTS if case not in LENGTH_DEPENDENT else []):  # batched == alone
        alone = tokenizer(text, return_tensors="pt").input_ids
        with torch.inference_mode():
            assert_same(got[row][real[row]], ours(alone)[0])


@pytest.mark.parametrize("case", [case for case in CASES if case not in LENGTH_DEPENDENT])
def test_incremental_decoding_equals_full_forward(case):
    path, tokenizer, theirs, ours = models(case)
    ids, mask = left_padded(tokenizer, TEXTS)
    steps, prefill = 5, ids.shape[1] - 5
    expected = reference_logits(theirs, ids, mask)
    cache = ours.new_cache(ids.shape[0], ids.shape[1])
    with torch.inference_mode():
        pieces = [ours(ids[:, :prefill], mask[:, :prefill], cache)]
        for t in range(prefill, prefill + steps):
            pieces.append(ours(ids[:, t:t + 1], mask[:, :t + 1], cache))
    assert cache.length == ids.shape[1]
    got = torch.cat(pieces, dim=1)
    real = mask.bool()
    assert_same(got[real], expected[real])


def test_cache_rejects_a_mask_of_the_wrong_length():
    _, tokenizer, _, ours = models("llama")
    ids = tokenizer(TEXTS[1], return_tensors="pt").input_ids
    cache = ours.new_cache(1, 64)
    with torch.inference_mode():
        ours(ids, None, cache)
        with pytest.raises(ValueError, match="attention_mask covers"):
            ours(ids[:, :1], torch.ones(1, 3, dtype=torch.long), cache)


@pytest.mark.parametrize("arch", TOKENIZER_ARCHS)
def test_tokenizer(arch):
    from inferline.processing.tokenizer import Tokenizer

    path = build(arch, "causal-lm")
    import transformers

    theirs = transformers.AutoTokenizer.from_pretrained(path)
    ours = Tokenizer.from_pretrained(path)
    texts = ["Hello world, the quick fox.", "Größe 日本 🤗 naïve café",  # byte fallback / raw bytes
             "  two  spaces\nand a newline\t tab", "<|user|> hi<|end|> there <|im_start|>x<|im_end|>",
             "<s>inline bos</s>", ""]
    for text in texts:
        expected = theirs(text).input_ids
        got = ours.encode(text)[0].ids
        assert got == expected, text
        for skip in (False, True):
            assert ours.decode(got, skip_special_tokens=skip) == theirs.decode(expected, skip_special_tokens=skip)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == \
        (theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id)


@pytest.mark.parametrize("case", ["llama-llama3rope-bias-tied", "llama-rope-dynamic", "llama-rope-yarn-beta",
                                  "mistral-window8", "qwen2-sliding",
                                  "qwen3-qknorm-headdim16", "phi3-longrope-window"])  # one per arch: generate is slow
def test_greedy_generation(case):
    from inferline.generation.config import GenerationConfig
    from inferline.generation.engine import generate

    _, tokenizer, theirs, ours = models(case)
    ids, mask = left_padded(tokenizer, TEXTS)
    got = generate(ours, ids, mask, GenerationConfig.for_model(ours).update(max_new_tokens=10, do_sample=False))
    with torch.inference_mode():
        expected = theirs.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    assert got.tolist() == expected.tolist()
