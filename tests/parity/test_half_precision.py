"""float16 and bfloat16 on CPU through pipeline(..., dtype=...), against transformers 4.57.6 loaded in the same
dtype: one encoder (BERT text-classification), one decoder (GPT-2 text-generation), one encoder-decoder (BART
text2text-generation).

The checkpoints are trained at build time (fixtures.checkpoints._train, cached) so their answers have real margins:
a random tiny model sits on near-ties that half precision flips even inside transformers. Texts and token ids must
be identical; scores agree within TOLERANCE: two units in the last place of a score near 1 in that dtype (fp16 has
10 mantissa bits, bf16 7) — what a different summation order in one half-precision matmul can move a logit, and far
below the trained margins (the top score leads the next by > 0.7), so a real bug cannot hide in it.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from fixtures.checkpoints import CORPUS, TRAIN_LINES
from parity.compare import assert_same

STEPS = 200
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
TOLERANCE = {name: 2 * torch.finfo(dtype).eps for name, dtype in DTYPES.items()}  # 2e-3 and 1.6e-2
TEXTS = TRAIN_LINES + CORPUS[len(TRAIN_LINES):]  # the trained lines and a few it never saw
PROMPTS = [" ".join(line.split()[:4]) for line in CORPUS]


@pytest.fixture(scope="module", params=DTYPES)
def half(request, checkpoint):
    """make(task, arch, head) → (transformers pipeline, inferline pipeline) in the dtype, both built by name."""
    import transformers

    import inferline

    logging.getLogger("transformers").setLevel(logging.ERROR)
    made = {}

    def make(task, arch, head):
        if task not in made:
            path = str(checkpoint(arch, head, train_steps=STEPS))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                made[task] = (transformers.pipeline(task, model=path, device="cpu", dtype=request.param),
                              inferline.pipeline(task, model=path, device="cpu", dtype=request.param))
            assert made[task][1].dtype == DTYPES[request.param]
        return made[task]

    make.name = request.param
    return make


def by_label(result):
    return {entry["label"]: entry["score"] for entry in result}


def test_encoder_text_classification(half):
    theirs, ours = half("text-classification", "bert", "sequence-classification")
    atol = TOLERANCE[half.name]
    expected = theirs(TEXTS, top_k=None)
    assert min(r[0]["score"] - r[1]["score"] for r in expected[:len(TRAIN_LINES)]) > 0.5  # real margins
    for batch_size in (1, 4):
        got = ours(TEXTS, top_k=None, batch_size=batch_size)
        assert [r[0]["label"] for r in got] == [r[0]["label"] for r in expected]
        assert_same([by_label(r) for r in got], [by_label(r) for r in expected], atol=atol)
    assert_same(ours(TEXTS[0]), theirs(TEXTS[0]), atol=atol)


def test_decoder_text_generation(half):
    theirs, ours = half("text-generation", "gpt2", "causal-lm")
    kwargs = dict(max_new_tokens=10, do_sample=False)
    expected = theirs(PROMPTS, **kwargs)
    assert_same(ours(PROMPTS, **kwargs), expected)
    assert_same(ours(PROMPTS, batch_size=4, **kwargs), expected)
    assert_same(ours(PROMPTS[:3], return_tensors=True, **kwargs), theirs(PROMPTS[:3], return_tensors=True, **kwargs))
    # the margins hold: half precision writes what the trained lines continue with
    assert expected[0][0]["generated_text"].startswith(" ".join(CORPUS[0].split()[:8]))


def test_seq2seq_text2text_generation(half):
    theirs, ours = half("text2text-generation", "bart", "seq2seq-lm")
    for kwargs in (dict(max_new_tokens=12, num_beams=1), dict(max_new_tokens=10, num_beams=3)):
        expected = theirs(TEXTS[:6], **kwargs)
        assert_same(ours(TEXTS[:6], **kwargs), expected)
        assert_same(ours(TEXTS[:6], batch_size=4, **kwargs), expected)
    # trained to map each line to the start of the next one
    assert expected[0]["generated_text"].startswith(" ".join(TRAIN_LINES[1].split()[:4]))
