"""text2text-generation, summarization and translation: text in, generated text out, from an encoder-decoder.

>>> t2t = pipeline("text2text-generation", model="google-t5/t5-small")
>>> t2t("translate English to German: The house is wonderful.", max_new_tokens=20)
[{'generated_text': 'Das Haus ist wunderbar.'}]
>>> pipeline("translation_en_to_de", model="google-t5/t5-small")("The house is wonderful.")
[{'translation_text': 'Das Haus ist wunderbar.'}]

Generation settings come, lowest priority first, from the pipeline defaults (max_new_tokens=256,
num_beams=4; only for what the checkpoint leaves unset), the checkpoint's generation_config.json (or
config.json), config.json's legacy `task_specific_params[task]` (whose `prefix`, e.g. T5's "summarize: ",
is put in front of every input), construction kwargs and call kwargs. A given max_length is honoured.
This is the documented order, as text-generation's (see generation_defaults); transformers 4.57.6 lets
its pipeline defaults win over the checkpoint's settings and over a call-time max_length.
"""

from __future__ import annotations

import enum
import logging
import warnings

import torch

from ..generation import GenerationConfig, generate
from .base import Pipeline
from .generation_defaults import GENERATE_EXTRAS, GENERATION_PARAMETERS, GenerationDefaults, check_generate_extras
from .text import check_flag, check_text, encode_many, encoding_tensors, model_token_limit

logger = logging.getLogger(__name__)


class ReturnType(enum.Enum):
    TENSORS = 0
    TEXT = 1


class Text2TextGenerationPipeline(GenerationDefaults, Pipeline):
    """Generate text from text with an encoder-decoder (`seq2seq-lm`); any generation kwarg is accepted.

    A string gives `[{"generated_text": ...}]` (one dict per returned sequence); a list of strings gives
    one such result per input, unwrapped to one dict each when every input returned one sequence.
    """

    return_name = "generated"
    default_generation = {"max_new_tokens": 256, "num_beams": 4}

    def __init__(self, model, tokenizer=None, task: str = "", **kwargs):
        if tokenizer is None:
            raise ValueError(f"The {task or type(self).__name__} pipeline needs a tokenizer; pass `tokenizer=`.")
        if not getattr(model, "is_encoder_decoder", False):
            raise ValueError(f"{type(self).__name__} needs an encoder-decoder model (a 'seq2seq-lm' head); got "
                             f"{type(model).__name__}.")
        self.init_generation(model, tokenizer, task)  # before super(): construction kwargs are validated against it
        super().__init__(model, tokenizer, task=task, **kwargs)

    def __call__(self, inputs=None, *args, **kwargs):
        result = super().__call__(inputs, *args, **kwargs)
        # transformers' shape: a list of strings → one dict per input when each returned one sequence.
        if isinstance(inputs, (list, tuple)) and all(isinstance(x, str) for x in inputs) \
                and all(len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    # ----- the contract -----
    def _sanitize_parameters(self, return_tensors=None, return_text=None, return_type=None,
                             clean_up_tokenization_spaces=None, truncation=None, stop_sequence=None,
                             **generate_kwargs):
        unknown = sorted(k for k in generate_kwargs if k not in GENERATION_PARAMETERS | GENERATE_EXTRAS)
        if unknown:
            raise TypeError(f"Unknown parameter(s) for {self.task or type(self).__name__}: {unknown}. Accepted: "
                            f"return_tensors, return_text, clean_up_tokenization_spaces, truncation, stop_sequence "
                            f"and the generation parameters {sorted(GENERATION_PARAMETERS | GENERATE_EXTRAS)}.")
        preprocess = {} if truncation is None else {"truncation": truncation}
        postprocess = {}
        del return_text  # accepted for compatibility; transformers' output is decided by return_tensors alone
        if return_tensors is not None and return_type is None:
            return_type = ReturnType.TENSORS if return_tensors else ReturnType.TEXT
        if return_type is not None:
            postprocess["return_type"] = _return_type(return_type)
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = check_flag(clean_up_tokenization_spaces,
                                                                     "clean_up_tokenization_spaces")
        if stop_sequence is not None:
            ids = self.tokenizer.encode(stop_sequence, add_special_tokens=False)[0].ids
            if not ids:
                raise ValueError(f"`stop_sequence` {stop_sequence!r} encodes to no token.")
            if len(ids) > 1:
                warnings.warn("Stopping on a multiple token sequence is not supported; the first token of the stop "
                              "sequence is used as the end-of-sequence token.", UserWarning, stacklevel=4)
            generate_kwargs["eos_token_id"] = ids[0]
        check_generate_extras(generate_kwargs)
        self._generation_config(generate_kwargs)  # invalid values fail now, not inside a batch
        return preprocess, generate_kwargs, postprocess

    def preprocess(self, inputs, **params):
        return self.preprocess_batch([inputs], **params)[0]

    def preprocess_batch(self, items, truncation=None):
        texts = [(self.prefix or "") + check_text(item) for item in items]
        return [encoding_tensors(e, ("input_ids", "attention_mask")) for e in self._encode(texts, truncation)]

    def _forward(self, model_inputs, **generate_kwargs):
        input_ids = model_inputs["input_ids"]
        B, S = input_ids.shape
        config = self._generation_config(generate_kwargs)
        self.check_inputs(S, config.min_length, config.max_length)
        output_ids = generate(self.model, input_ids, model_inputs.get("attention_mask"), config,
                              streamer=generate_kwargs.get("streamer"), tokenizer=self.tokenizer)  # (B * n, L)
        output_ids = output_ids.reshape(B, -1, output_ids.shape[-1])  # (B, n, L)
        return {"output_ids": output_ids, "lengths": _generated_lengths(output_ids, config.eos_ids)}

    def postprocess(self, model_outputs, return_type=ReturnType.TEXT, clean_up_tokenization_spaces=False):
        # Cut the padding a longer neighbour in the batch added, so batched results equal unbatched ones.
        rows = model_outputs["output_ids"][0][:, : int(model_outputs["lengths"][0])]  # (n, L)
        if return_type == ReturnType.TENSORS:
            return [{f"{self.return_name}_token_ids": row} for row in rows]
        return [{f"{self.return_name}_text": self.tokenizer.decode(
            row.tolist(), skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces)}
            for row in rows]

    # ----- helpers -----
    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        """Warn about inputs and lengths that are probably a mistake for this task (none here)."""

    def _generation_config(self, generate_kwargs: dict) -> GenerationConfig:
        """The config of one call: forward kwargs split into generation parameters and a `generation_config=`."""
        kwargs = {k: v for k, v in generate_kwargs.items() if k not in GENERATE_EXTRAS}  # use_cache: always on
        return self.resolve_generation_config(kwargs, generate_kwargs.get("generation_config"))

    def _encode(self, texts: list[str], truncation, tokenizer=None) -> list:
        """Tokenise as transformers: no truncation unless asked (then to the tokenizer's model_max_length). An
        input longer than the model takes is cut to its limit with a warning (truncation=None) or is an error
        (truncation=False), rather than a crash inside the model."""
        truncation = getattr(truncation, "value", truncation)  # transformers' TruncationStrategy enum
        limit = getattr(self.model, "max_input_tokens", None) if truncation in (None, False, "do_not_truncate") \
            else model_token_limit(self)
        return encode_many(self, texts, truncation=truncation, limit=limit, tokenizer=tokenizer)


class SummarizationPipeline(Text2TextGenerationPipeline):
    """Summarise texts: `[{"summary_text": ...}]`; warns when max_length is not shorter than the input."""

    return_name = "summary"

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        if max_length < min_length:
            logger.warning("Your min_length=%s must be inferior than your max_length=%s.", min_length, max_length)
        if input_length < max_length:
            logger.warning("Your max_length is set to %s, but your input_length is only %s. Since this is a "
                           "summarization task, where outputs shorter than the input are typically wanted, you might "
                           "consider decreasing max_length manually, e.g. summarizer('...', max_length=%s)",
                           max_length, input_length, input_length // 2)


class TranslationPipeline(Text2TextGenerationPipeline):
    """Translate texts: `[{"translation_text": ...}]`.

    `src_lang`/`tgt_lang` come from the task name (translation_en_to_de) or are passed; a tokenizer with
    language codes (mBART-50, NLLB) encodes with the source code and the target code is forced as the
    first generated token. Other models ignore them (T5 takes its "translate ...: " prefix from
    task_specific_params).
    """

    return_name = "translation"

    def __init__(self, model, tokenizer=None, task: str = "", **kwargs):
        task = task or "translation"
        raw = getattr(getattr(model, "config", None), "raw", None) or {}
        params = raw.get("task_specific_params") or {}
        if task == "translation":  # as transformers: take the checkpoint's first translation_XX_to_YY
            named = next((k for k in params if k.startswith("translation")), None)
            if named is not None:
                warnings.warn(f'"translation" task was used, instead of "translation_XX_to_YY", defaulting to '
                              f'"{named}"', UserWarning, stacklevel=2)
                task = named
        parts = task.split("_")
        if len(parts) == 4 and "src_lang" not in kwargs and "tgt_lang" not in kwargs:  # translation, XX, to, YY
            kwargs.update(src_lang=parts[1], tgt_lang=parts[3])
        super().__init__(model, tokenizer, task=task, **kwargs)

    def _sanitize_parameters(self, src_lang=None, tgt_lang=None, **kwargs):
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if src_lang is not None:
            preprocess["src_lang"] = src_lang
        if tgt_lang is not None:
            preprocess["tgt_lang"] = tgt_lang
            if self._has_language_codes() and "forced_bos_token_id" not in forward:
                forward["forced_bos_token_id"] = self.tokenizer.convert_tokens_to_ids(tgt_lang)
        return preprocess, forward, postprocess

    def _has_language_codes(self) -> bool:
        return bool(getattr(self.tokenizer, "language_codes", None)) and hasattr(self.tokenizer, "for_source_language")

    def preprocess_batch(self, items, truncation=None, src_lang=None, tgt_lang=None):
        if not self._has_language_codes():
            return super().preprocess_batch(items, truncation)
        if src_lang is None or tgt_lang is None:
            raise ValueError(f"Translation with this model needs `src_lang` and `tgt_lang` (language codes such as "
                             f"{self.tokenizer.language_codes[:3]}); got src_lang={src_lang!r}, tgt_lang={tgt_lang!r}.")
        # No prefix here (as transformers): the source language code plays its part.
        encodings = self._encode([check_text(item) for item in items], truncation,
                                 self.tokenizer.for_source_language(src_lang))
        return [encoding_tensors(e, ("input_ids", "attention_mask")) for e in encodings]

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        if input_length > 0.9 * max_length:
            logger.warning("Your input_length: %s is bigger than 0.9 * max_length: %s. You might consider increasing "
                           "your max_length manually, e.g. translator('...', max_length=400)", input_length,
                           max_length)


def _return_type(value) -> ReturnType:
    """A ReturnType (ours or transformers'), or its value."""
    value = getattr(value, "value", value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return ReturnType(value)
    raise ValueError(f"`return_type` must be a ReturnType (TENSORS, TEXT) or its value 0 or 1; got {value!r:.60}.")


def _generated_lengths(output_ids: torch.Tensor, eos: list[int] | None) -> torch.Tensor:
    """(B, n, L) → (B,): each input's own output length, ignoring padding up to longer batch neighbours.

    A sequence ends at its first EOS after the start token (or runs to L); an input's length is that of its
    longest returned sequence, which is what the same input generated alone would have.
    """
    B, n, L = output_ids.shape
    if not eos or L < 2:
        return torch.full((B,), L, dtype=torch.long)
    is_eos = torch.isin(output_ids[..., 1:], torch.tensor(eos, device=output_ids.device))  # (B, n, L - 1)
    ends = torch.where(is_eos.any(-1), is_eos.int().argmax(-1) + 2, L)  # (B, n)
    return ends.amax(-1)
