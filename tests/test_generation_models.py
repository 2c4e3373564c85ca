"""GPT-2 logits parity with transformers 4.57.6: full forward, left-padded batches, the KV cache, the base
head, config variants and the save round trip (Conv1D weights transposed back)."""

from __future__ import annotations

import functools
import logging

import pytest
import torch

from fixtures.checkpoints import build
from fixtures.inputs import left_padded

TEXTS = ["Hugging Face is a company based in New York City and Paris.", "The quick brown fox",
         "Paris is the capital and most populous city of France. The Eiffel Tower was completed in 1889."]
# case id → config overrides; the variants reach the attention-scaling branches.
CASES = {
    "default": {},
    "inverse-layer-scale-upcast-relu-ninner": dict(scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True,
                                                  activation_function="relu", n_inner=48),
    "unscaled": dict(scale_attn_weights=False),
}


@functools.lru_cache(maxsize=None)
def models(case: str):
    """(path, transformers tokenizer, transformers model, our causal-lm model) for one case, built once."""
    import transformers

    from inferline.models.registry import load_model

    logging.getLogger("transformers").setLevel(logging.ERROR)
    path = build("gpt2", "causal-lm", **CASES[case])
    # Eager attention: transformers' SDPA path ignores scale_attn_weights / scale_attn_by_inverse_layer_idx
    # (it always scales by 1/sqrt(d)); the eager path is the architecture's definition, and ours.
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    return path, transformers.AutoTokenizer.from_pretrained(path), theirs, load_model(path, "causal-lm")


def generate_positions(mask: torch.Tensor) -> torch.Tensor:
    """The position ids transformers' generate derives from a left-padded mask."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


@pytest.mark.parametrize("case", CASES)
def test_full_forward(case):
    _, tokenizer, theirs, ours = models(case)
    ids = tokenizer(TEXTS[2], return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_left_padded_batch(case):
    _, tokenizer, theirs, ours = models(case)
    ids, mask = left_padded(tokenizer, TEXTS)
    with torch.no_grad():
        expected = theirs(ids, attention_mask=mask, position_ids=generate_positions(mask)).logits
        got = ours(ids, mask)
    real = mask.bool()  # padded positions are never read
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)


def test_incremental_decoding_equals_full_forward():
    _, tokenizer, _, ours = models("default")
    ids, mask = left_padded(tokenizer, TEXTS)
    T = ids.shape[1]
    with torch.no_grad():
        full = ours(ids, mask)
        cache = ours.new_cache(ids.shape[0], T + 4)
        split = T - 5
        steps = [ours(ids[:, :split], mask[:, :split], cache)]
        steps += [ours(ids[:, t:t + 1], mask[:, :t + 1], cache) for t in range(split, T)]
    assert cache.length == T
    real = mask.bool()
    torch.testing.assert_close(torch.cat(steps, 1)[real], full[real], atol=1e-5, rtol=1e-5)


def test_cache_without_mask_equals_full_forward():
    _, tokenizer, _, ours = models("default")
    ids = tokenizer(TEXTS[0], return_tensors="pt").input_ids
    with torch.no_grad():
        full = ours(ids)
        cache = ours.new_cache(1, ids.shape[1])
        steps = [ours(ids[:, :3], cache=cache)] + [ours(ids[:, t:t + 1], cache=cache) for t in range(3, ids.shape[1])]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_base_head_loads_from_causal_lm_checkpoint():
    from inferline.models.registry import load_model

    path, tokenizer, theirs, _ = models("default")
    base = load_model(path, "base")
    ids = tokenizer(TEXTS[1], return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(base(ids), theirs.transformer(ids).last_hidden_state, atol=1e-5, rtol=1e-5)


def test_save_round_trip(tmp_path):
    """Conv1D weights are stored (in, out): saving must transpose them back for transformers to reload."""
    import transformers

    from inferline.models.saving import save_model

    _, tokenizer, theirs, ours = models("default")
    save_model(ours, tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids = tokenizer(TEXTS[1], return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, theirs(ids).logits, atol=1e-6, rtol=1e-6)
