"""Model-level parity with transformers 4.57.6: every encoder family × head, its tokenizer, strict loading."""

from __future__ import annotations

import functools
import logging
import shutil

import pytest
import torch

from fixtures.checkpoints import AUTO_CLASSES
from parity.archs import ENCODER_ARCHS
from parity.compare import assert_same

HEADS = ["base", "sequence-classification", "token-classification", "question-answering", "masked-lm"]
TEXTS = ["Hugging Face is a company based in New York City and Paris; its headquarters are in Manhattan.",
         "Short text."]
PAIRS = (["Where do you live?", "Who?"], ["I live in London, near the river.", "Me."])
# Configurations the default fixtures do not reach: (arch, head, config overrides).
VARIANTS = [
    ("distilbert", "base", {"sinusoidal_pos_embds": True}),
    ("deberta-v2", "base", {"conv_kernel_size": 3}),
    ("deberta-v2", "base", {"share_att_key": False}),
    ("deberta-v2", "token-classification", {"share_att_key": False, "pos_att_type": "c2p"}),
    ("deberta-v2", "base", {"position_buckets": -1, "max_relative_positions": 6}),
    ("deberta-v2", "sequence-classification", {"position_biased_input": True, "type_vocab_size": 2,
                                               "embedding_size": 24}),
    ("deberta-v2", "masked-lm", {"embedding_size": 24}),
]


@functools.lru_cache(maxsize=None)
def reference(path, head):
    import transformers

    logging.getLogger("transformers").setLevel(logging.ERROR)
    model = getattr(transformers, AUTO_CLASSES[head]).from_pretrained(path).eval()
    return transformers.AutoTokenizer.from_pretrained(path), model


def outputs(result, head) -> list[torch.Tensor]:
    """Our head's output, or transformers' output object, as a list of tensors."""
    if hasattr(result, "start_logits"):
        return [result.start_logits, result.end_logits]
    if hasattr(result, "last_hidden_state"):
        return [result.last_hidden_state]
    return [getattr(result, "logits", result)]


def assert_model_matches(path, head, texts, pairs=None):
    from inferline.models.registry import load_model

    tokenizer, theirs = reference(path, head)
    ours = load_model(path, head)
    batch = tokenizer(texts, pairs, padding=True, return_tensors="pt")
    mask = batch["attention_mask"].bool()
    with torch.inference_mode():
        expected = outputs(theirs(**batch), head)
        got = outputs(ours(**{k: v for k, v in batch.items() if k in ours.input_names}), head)
        for i in range(len(texts)):  # each row alone gives what it gave in the padded batch
            n = int(mask[i].sum())
            single = {k: v[i:i + 1, :n] for k, v in batch.items() if k in ours.input_names}
            for a, b in zip(outputs(ours(**single), head), got):
                assert_same(a[0], b[i, :n] if head != "sequence-classification" else b[i], path=f"row {i} alone")
    for a, b in zip(got, expected):
        if head == "sequence-classification":
            assert_same(a, b)
        else:  # padded positions are free to differ
            assert_same(a[mask], b[mask])


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", ENCODER_ARCHS)
def test_model_matches_transformers(checkpoint, arch, head):
    path = checkpoint(arch, head)
    assert_model_matches(path, head, TEXTS)
    assert_model_matches(path, head, *PAIRS)


@pytest.mark.parametrize("arch, head, overrides", VARIANTS, ids=str)
def test_config_variants_match_transformers(checkpoint, arch, head, overrides):
    path = checkpoint(arch, head, **overrides)
    assert_model_matches(path, head, TEXTS)
    assert_model_matches(path, head, *PAIRS)


def test_deberta_v2_new_masked_lm_head(tmp_path, checkpoint):
    """legacy=False names the head lm_predictions.lm_head.*. 4.57.6 only runs it untied (it ties the
    head's dense layer to the word embeddings otherwise) and cannot save it (see below), so the checkpoint
    is written from the model's own state dict."""
    import transformers
    from safetensors.torch import save_file

    from inferline.models.registry import load_model

    source = checkpoint("deberta-v2", "masked-lm")
    config = transformers.AutoConfig.from_pretrained(source, legacy=False, tie_word_embeddings=False)
    torch.manual_seed(0)
    theirs = transformers.AutoModelForMaskedLM.from_config(config).eval()
    with torch.no_grad():
        theirs.lm_predictions.lm_head.bias.normal_()
    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(tmp_path / "model.safetensors"))
    config.save_pretrained(tmp_path)
    ours = load_model(tmp_path, "masked-lm")
    ids = torch.tensor([[1, 20, 30, 40, 50, 2]])
    with torch.inference_mode():
        assert_same(ours(ids), theirs(ids).logits)


def test_deberta_v2_new_masked_lm_as_saved_by_transformers_is_an_error(checkpoint):
    # Deliberate: 4.57.6 drops the word embeddings when saving legacy=False and reloads them as meta
    # tensors; we refuse the checkpoint and name the tensor instead of running a broken model.
    from inferline.models.registry import load_model
    from inferline.models.weights import WeightLoadingError

    with pytest.raises(WeightLoadingError, match="deberta.embeddings.word_embeddings.weight"):
        load_model(checkpoint("deberta-v2", "masked-lm", legacy=False), "masked-lm")


TOKENIZER_TEXTS = ["Hello world!", "  Héllo, wörld: UNAFFABLE naïve café's 1234 ...", "a",
                   "New York City and Paris."]
TOKENIZER_PAIRS = [("Where do you live?", "I live in London."), ("Short", "Another, longer   second segment!")]


@pytest.mark.parametrize("arch", ENCODER_ARCHS)
def test_tokenizer_matches_transformers(checkpoint, arch):
    from inferline.processing.tokenizer import Tokenizer

    path = checkpoint(arch, "base")
    theirs, _ = reference(path, "base")
    ours = Tokenizer.from_pretrained(path)
    for text, pair in [(t, None) for t in TOKENIZER_TEXTS] + TOKENIZER_PAIRS:
        expected = theirs(text, pair, return_offsets_mapping=True)
        got = ours.encode(text, pair)[0]
        assert got.ids == expected["input_ids"], (text, pair)
        assert got.offsets == [tuple(o) for o in expected["offset_mapping"]], (text, pair)
        if "token_type_ids" in expected:
            assert got.type_ids == expected["token_type_ids"], (text, pair)


@pytest.mark.parametrize("head, dropped", [("base", "embeddings.LayerNorm.weight"),
                                           ("token-classification", "classifier.weight")])
@pytest.mark.parametrize("arch", ENCODER_ARCHS)
def test_missing_tensor_is_named(tmp_path, checkpoint, arch, head, dropped):
    from safetensors.torch import load_file, save_file

    from inferline.models.registry import load_model
    from inferline.models.weights import WeightLoadingError

    source = checkpoint(arch, head)
    state = load_file(str(source / "model.safetensors"))
    name = next(k for k in state if k.endswith(dropped))
    del state[name]
    save_file(state, str(tmp_path / "model.safetensors"))
    shutil.copy(source / "config.json", tmp_path / "config.json")
    with pytest.raises(WeightLoadingError, match=name.replace(".", r"\.")):
        load_model(tmp_path, head)
