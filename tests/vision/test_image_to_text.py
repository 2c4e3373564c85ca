"""image-to-text parity with transformers 4.57.6: VisionEncoderDecoder (ViT + cross-attending GPT-2, with
enc_to_dec_proj) and BLIP captioning (with a conditional `prompt`), greedy and beam search, on images of
several sizes and modes. Batched results must equal transformers' unbatched ones."""

from __future__ import annotations

import pytest

from fixtures.images import make_image, variety
from fixtures.vision_checkpoints import build_vision
from parity.compare import assert_plain_json, assert_same

pytest.importorskip("PIL.Image")
IMAGES = variety(5) + [make_image(64, 48, "RGB", 9)]  # two of one size
SHORT = {"max_new_tokens": 7}


def _pair(pipelines, arch, **kwargs):
    return pipelines("image-to-text", build_vision(arch, "vision2seq"), **kwargs)


@pytest.fixture(params=["vit-gpt2", "blip"])
def pair(request, pipelines):
    return _pair(pipelines, request.param)


def test_single_and_list(pair):
    theirs, ours = pair
    result = ours(IMAGES[0], **SHORT)
    assert_same(result, theirs(IMAGES[0], **SHORT))
    assert len(result) == 1 and set(result[0]) == {"generated_text"}
    listed = ours(IMAGES[:3], **SHORT)
    assert_same(listed, theirs(IMAGES[:3], **SHORT))
    assert isinstance(listed[0], list)  # list in → list of lists
    assert_plain_json(listed)
    # transformers 4.57.6 documents `images=` but its signature still requires `inputs` (TypeError)
    assert_same(ours(images=IMAGES[1], **SHORT), theirs(IMAGES[1], **SHORT))


@pytest.mark.parametrize("generate_kwargs", [
    {"num_beams": 3, "max_new_tokens": 6},
    {"num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 5},
    {"max_new_tokens": 6, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2},
    {"max_new_tokens": 4, "min_new_tokens": 4, "num_beams": 2, "length_penalty": 0.5},
], ids=str)
def test_generate_kwargs(pair, generate_kwargs):
    theirs, ours = pair
    expected = [theirs(image, generate_kwargs=generate_kwargs) for image in IMAGES[:3]]
    assert_same(ours(IMAGES[:3], generate_kwargs=generate_kwargs), expected)
    assert_same(ours(IMAGES[:3], generate_kwargs=generate_kwargs, batch_size=3), expected)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_mixed_sizes_equal_unbatched(pair, batch_size):
    theirs, ours = pair
    expected = [theirs(image, **SHORT) for image in IMAGES]
    assert_same(ours(IMAGES, batch_size=batch_size, **SHORT), expected)
    assert_same(list(ours(iter(IMAGES), batch_size=batch_size, **SHORT)), expected)
    beams = {"generate_kwargs": {"num_beams": 2, "max_new_tokens": 5}}
    assert_same(ours(IMAGES, batch_size=batch_size, **beams), [theirs(image, **beams) for image in IMAGES])


@pytest.mark.parametrize("batch_size", [1, 4])
def test_rows_ending_at_different_steps(pipelines, batch_size):
    """Token 82 ends some captions after two tokens and others after three: finished rows are padded in a batch
    and the padding never reaches the result."""
    theirs, ours = _pair(pipelines, "vit-gpt2")
    kwargs = {"generate_kwargs": {"eos_token_id": 82, "max_new_tokens": 8}}
    expected = [theirs(image, **kwargs) for image in IMAGES]
    assert len({r[0]["generated_text"] for r in expected}) > 1
    assert_same(ours(IMAGES, batch_size=batch_size, **kwargs), expected)


def test_pipeline_default_length(pipelines):
    """No max_new_tokens: the pipeline default of 256 new tokens (the tiny GPT-2 holds 320 positions)."""
    theirs, ours = _pair(pipelines, "vit-gpt2")
    assert_same(ours(IMAGES[2]), theirs(IMAGES[2]))


def test_too_long_for_the_decoder_is_a_clear_error(pipelines):
    """transformers 4.57.6 fails with an IndexError inside BLIP's position embeddings (64 here); ours says why."""
    _, ours = _pair(pipelines, "blip")
    with pytest.raises(ValueError, match="max_new_tokens"):
        ours(IMAGES[0])


@pytest.mark.parametrize("prompt", ["a picture of", "Two CATS, sleeping", ""])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_blip_prompt(pipelines, prompt, batch_size):
    theirs, ours = _pair(pipelines, "blip")
    expected = [theirs(image, prompt=prompt, **SHORT) for image in IMAGES[:4]]
    result = ours(IMAGES[:4], prompt=prompt, batch_size=batch_size, **SHORT)
    assert_same(result, expected)
    if prompt:
        assert all(r[0]["generated_text"].startswith(prompt.lower()) for r in result)
    beams = {"prompt": prompt, "generate_kwargs": {"num_beams": 3, "max_new_tokens": 4}}
    assert_same(ours(IMAGES[:2], batch_size=batch_size, **beams), [theirs(image, **beams) for image in IMAGES[:2]])


def test_prompt_refused_by_vision_encoder_decoder(pipelines):
    theirs, ours = _pair(pipelines, "vit-gpt2")
    with pytest.raises(ValueError, match="conditional text generation"):
        theirs(IMAGES[0], prompt="a picture of", **SHORT)
    with pytest.raises(ValueError, match="conditional text generation"):
        ours(IMAGES[0], prompt="a picture of", **SHORT)


def test_construction_parameters_and_timeout(pipelines):
    theirs, ours = _pair(pipelines, "blip", max_new_tokens=5)
    assert_same(ours(IMAGES[3], timeout=10.0), theirs(IMAGES[3], timeout=10.0))
    assert_same(ours(IMAGES[3], max_new_tokens=3), theirs(IMAGES[3], max_new_tokens=3))  # call time wins


def test_blip_explicit_eos_is_honoured(pipelines):
    """BLIP's generate fixes eos_token_id to [SEP]; transformers 4.57.6 raises a TypeError when one is also given.
    Ours takes the given one: with the [SEP] rule gone, the caption runs to max_new_tokens."""
    _, ours = _pair(pipelines, "blip")
    tokens = ours.tokenizer.encode(ours(IMAGES[0], **SHORT)[0]["generated_text"], add_special_tokens=False)[0].ids
    stop = ours(IMAGES[0], generate_kwargs={"eos_token_id": tokens[1], "max_new_tokens": 7})[0]["generated_text"]
    assert len(ours.tokenizer.encode(stop, add_special_tokens=False)[0].ids) < len(tokens)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"prompt": 3}, ValueError, "prompt"),
    ({"prompt": ["a", "b"]}, ValueError, "prompt"),
    ({"max_new_tokens": 3, "generate_kwargs": {"max_new_tokens": 4}}, ValueError, "max_new_tokens"),
    ({"top_k": 3}, TypeError, "top_k"),
    ({"generate_kwargs": "greedy"}, TypeError, "generate_kwargs"),
    ({"generate_kwargs": {"num_beams": 0}}, ValueError, "num_beams"),
    ({"generate_kwargs": {"bogus": 1}}, TypeError, "bogus"),
    ({"max_new_tokens": 0}, ValueError, "max_new_tokens"),
], ids=str)
def test_bad_parameters(pipelines, kwargs, error, match):
    _, ours = _pair(pipelines, "blip")
    with pytest.raises(error, match=match):
        ours(IMAGES[0], **kwargs)


def test_bad_inputs(pipelines):
    _, ours = _pair(pipelines, "vit-gpt2")
    with pytest.raises(ValueError, match="empty list"):
        ours([], **SHORT)
    with pytest.raises(ValueError, match="needs inputs"):
        ours(None, **SHORT)
    with pytest.raises(FileNotFoundError, match="no/such/image.png"):
        ours("no/such/image.png", **SHORT)
    with pytest.raises(TypeError, match="image input"):
        ours(3.5, **SHORT)


def test_needs_a_vision2seq_model(checkpoint):
    import inferline

    with pytest.raises(ValueError, match="head|image-to-text"):
        inferline.pipeline("image-to-text", model=str(checkpoint("gpt2", "causal-lm")))


def test_generation_settings_from_the_decoder_config(tmp_path):
    """Without generation_config.json, the settings config.json leaves unset come from its decoder config, as
    transformers' from_model_config does: here eos_token_id 82, which ends some captions early."""
    import json
    import logging
    import shutil

    import transformers

    import inferline

    folder = tmp_path / "model"
    shutil.copytree(build_vision("vit-gpt2", "vision2seq"), folder)
    (folder / "generation_config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    config.pop("eos_token_id", None)
    config["decoder"]["eos_token_id"] = 82
    (folder / "config.json").write_text(json.dumps(config))
    logging.getLogger("transformers").setLevel(logging.ERROR)
    theirs = transformers.pipeline("image-to-text", model=str(folder), device="cpu")
    ours = inferline.pipeline("image-to-text", model=str(folder), device="cpu")
    expected = [theirs(image, max_new_tokens=8) for image in IMAGES]
    assert_same(ours(IMAGES, max_new_tokens=8, batch_size=4), expected)
    assert_same(ours(IMAGES, max_new_tokens=8), expected)
    assert len({r[0]["generated_text"] for r in expected}) > 1
