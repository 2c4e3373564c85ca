"""image-to-text: a caption generated for an image by a vision encoder and a text decoder.

>>> caption = pipeline("image-to-text", model="ydshieh/vit-gpt2-coco-en")
>>> caption("parrots.png")
[{'generated_text': 'two birds are standing next to each other '}]
>>> blip = pipeline("image-to-text", model="Salesforce/blip-image-captioning-base")
>>> blip("parrots.png", prompt="a photography of", max_new_tokens=20)
[{'generated_text': 'a photography of two parrots ...'}]

Parameters are transformers 4.57.6's: `max_new_tokens`, `generate_kwargs` (any generation setting: num_beams,
do_sample, ...), `prompt` (a text the caption continues, for models that take one: BLIP; a
vision-encoder-decoder refuses it) and `timeout` (for image URLs). One image gives `[{"generated_text": ...}]`
(one dict per returned sequence), a list of images a list of those. Generation settings resolve as in
text2text-generation (see generation_defaults), with the pipeline default max_new_tokens=256.

How a text prompt becomes the decoder's first tokens, and which generation settings a model fixes, the model
declares (`prompt_ids`, `generation_overrides`); decoding is `inferline.generation.generate`.
"""

from __future__ import annotations

import dataclasses

import torch

from ..generation import generate
from .base import Pipeline
from .generation_defaults import GENERATE_EXTRAS, GenerationDefaults, check_generate_extras
from .text2text_generation import _generated_lengths
from .vision import ImagePipelineMixin


class ImageToTextPipeline(GenerationDefaults, ImagePipelineMixin, Pipeline):
    """Caption images with a `vision2seq` model (VisionEncoderDecoder, BLIP)."""

    needs_tokenizer = True
    default_generation = {"max_new_tokens": 256}

    def __init__(self, model, tokenizer=None, task: str = "", **kwargs):
        if tokenizer is None:
            raise ValueError(f"The {task or 'image-to-text'} pipeline needs a tokenizer to decode captions; the "
                             f"checkpoint has no tokenizer files: pass `tokenizer=`.")
        if not callable(getattr(model, "encode", None)) or not callable(getattr(model, "prompt_ids", None)):
            raise ValueError(f"The image-to-text pipeline needs an image-to-text model (a 'vision2seq' head); got "
                             f"{type(model).__name__}.")
        self.init_generation(model, tokenizer, task)  # before super(): construction kwargs are validated against it
        super().__init__(model, tokenizer, task=task, **kwargs)

    # ----- the contract -----
    def _sanitize_parameters(self, max_new_tokens=None, generate_kwargs=None, prompt=None, timeout=None, **unknown):
        if unknown:
            raise TypeError(f"Unknown parameter(s) for image-to-text: {sorted(unknown)}. Accepted: max_new_tokens, "
                            f"generate_kwargs, prompt, timeout (generation settings go in generate_kwargs).")
        preprocess, forward = {}, {}
        if timeout is not None:
            preprocess["timeout"] = timeout
        if prompt is not None:
            if not isinstance(prompt, str):
                raise ValueError(f"`prompt` must be a single string (one text for conditional captioning); got "
                                 f"{type(prompt).__name__}.")
            forward["prompt_ids"] = self._prompt_ids(prompt)
        if generate_kwargs is not None:
            if not isinstance(generate_kwargs, dict):
                raise TypeError(f"`generate_kwargs` must be a dict of generation settings; got "
                                f"{type(generate_kwargs).__name__}.")
            if max_new_tokens is not None and "max_new_tokens" in generate_kwargs:
                raise ValueError("`max_new_tokens` is defined both as an argument and inside `generate_kwargs`; "
                                 "pass it once.")
            forward.update(generate_kwargs)
        if max_new_tokens is not None:
            forward["max_new_tokens"] = max_new_tokens
        generation = {k: v for k, v in forward.items() if k != "prompt_ids"}
        check_generate_extras(generation)
        self._generation_config(generation)  # invalid settings fail now, not inside a batch
        return preprocess, forward, {}

    def preprocess(self, image, timeout=None):
        return self.pixel_inputs(image, timeout)[0]

    def _forward(self, model_inputs, prompt_ids=None, **generate_kwargs):
        pixel_values = self.model_dtype_inputs(model_inputs)["pixel_values"]
        B = pixel_values.shape[0]
        config = self._generation_config(generate_kwargs)
        if prompt_ids is None:
            prompt_ids = self.model.prompt_ids(None)
        decoder_prompt = None if prompt_ids is None else \
            torch.tensor([prompt_ids], dtype=torch.long, device=pixel_values.device).expand(B, -1)
        self._check_length(config, 1 if prompt_ids is None else len(prompt_ids))
        output_ids = generate(self.model, pixel_values, None, config, streamer=generate_kwargs.get("streamer"),
                              tokenizer=self.tokenizer, decoder_prompt=decoder_prompt)  # (B * n, L)
        output_ids = output_ids.reshape(B, -1, output_ids.shape[-1])  # (B, n, L)
        return {"output_ids": output_ids, "lengths": _generated_lengths(output_ids, config.eos_ids)}

    def postprocess(self, model_outputs):
        # Cut the padding a longer neighbour in the batch added, so batched results equal unbatched ones.
        rows = model_outputs["output_ids"][0][:, : int(model_outputs["lengths"][0])]  # (n, L)
        return [{"generated_text": self.tokenizer.decode(row.tolist(), skip_special_tokens=True)} for row in rows]

    # ----- helpers -----
    def _prompt_ids(self, prompt: str) -> list[int]:
        """The decoder's first tokens for a text prompt, as the model builds them from the tokenizer's encoding
        (special tokens included); a model that takes no prompt raises a ValueError naming itself."""
        return self.model.prompt_ids(self.tokenizer.encode(prompt)[0].ids)

    def _check_length(self, config, prompt_length: int) -> None:
        """A caption longer than the decoder's position table would fail inside the model; say so here."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        max_length = config.resolve_lengths(prompt_length, limit)[0]
        if limit is not None and max_length > limit:
            raise ValueError(f"This model's decoder holds {limit} positions; max_new_tokens={config.max_new_tokens} "
                             f"(max_length {max_length} with the {prompt_length} start token(s)) needs more. Pass a "
                             f"smaller `max_new_tokens`.")

    def _generation_config(self, generate_kwargs: dict):
        kwargs = {k: v for k, v in generate_kwargs.items() if k not in GENERATE_EXTRAS}  # use_cache: always on
        config = self.resolve_generation_config(kwargs, generate_kwargs.get("generation_config"))
        # Settings the model's own generate fixes (BLIP: its [SEP] ends a caption, whatever the config says);
        # given explicitly they are honoured (transformers 4.57.6 raises a TypeError for them).
        overrides = {k: v for k, v in (getattr(self.model, "generation_overrides", None) or {}).items()
                     if k not in generate_kwargs}
        return dataclasses.replace(config, **overrides) if overrides else config
