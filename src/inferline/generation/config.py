"""GenerationConfig: the decoding parameters, with transformers 4.57.6's defaults and derivation.

A checkpoint's defaults come from its generation_config.json when present, else from the generation
keys of config.json (what transformers' `GenerationConfig.from_model_config` does); call-time kwargs
then win (`update`). Lengths are resolved per call against the prompt (`resolve_lengths`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 20  # transformers' model-agnostic default: means "20 new tokens" unless set


@dataclass
class GenerationConfig:
    """Decoding parameters; names, meanings and defaults are transformers'."""

    max_length: int = DEFAULT_MAX_LENGTH
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    early_stopping: bool | str = False
    stop_strings: str | list[str] | None = None
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    bad_words_ids: list[list[int]] | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list[int] | None = None
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None
    num_return_sequences: int = 1
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None
    # Names set by the caller (not defaults): transformers treats an unset max_length specially.
    explicit: frozenset = field(default=frozenset(), repr=False, compare=False)

    # ----- construction -----
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GenerationConfig":
        """Known keys are taken, the rest ignored (file contents are not call kwargs)."""
        known = {k: v for k, v in values.items() if k in _FIELDS}
        unsupported = {k: v for k, v in values.items() if k in _UNSUPPORTED_DEFAULTS and v != _UNSUPPORTED_DEFAULTS[k]}
        if unsupported:
            logger.warning("Ignoring generation settings inferline does not implement: %s", unsupported)
        return cls(**known)

    @classmethod
    def from_pretrained(cls, folder: str | Path | None, model_config: dict[str, Any] | None = None
                        ) -> "GenerationConfig":
        """generation_config.json in `folder` if present, else the non-null generation keys of config.json; a
        composite's decoder config (`decoder`, `generator` or `text_config`) fills what the outer one leaves at
        the defaults, as transformers' from_model_config does."""
        path = Path(folder) / "generation_config.json" if folder is not None else None
        if path is not None and path.is_file():
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        values = {k: v for k, v in (model_config or {}).items() if v is not None}
        decoder = next((values[k] for k in ("decoder", "generator", "text_config") if isinstance(values.get(k), dict)),
                       None)
        for name, value in (decoder or {}).items():
            unset = name in _FIELDS and values.get(name, _FIELD_DEFAULTS[name]) == _FIELD_DEFAULTS[name]
            if unset and value is not None:
                values[name] = value
        return cls.from_dict(values)

    @classmethod
    def for_model(cls, model) -> "GenerationConfig":
        """The defaults of a model loaded by `models.registry.load_model`."""
        raw = getattr(getattr(model, "config", None), "raw", None) or {}
        return cls.from_pretrained(getattr(model, "checkpoint_dir", None), raw)

    def update(self, **kwargs) -> "GenerationConfig":
        """A copy with the call-time parameters applied; unknown names are a TypeError naming them."""
        unknown = sorted(k for k in kwargs if k not in _FIELDS)
        if unknown:
            raise TypeError(f"Unknown generation parameter(s) {unknown}; accepted: {sorted(_FIELDS)}.")
        for name, value in kwargs.items():
            _check_type(name, value)
        # None for a setting that cannot be None means "not given" (it would fail inside decoding)
        kwargs = {k: v for k, v in kwargs.items() if v is not None or _FIELD_DEFAULTS[k] is None}
        out = dataclasses.replace(self, **kwargs, explicit=self.explicit | frozenset(kwargs))
        out.validate()
        return out

    # ----- checks and derived values -----
    def validate(self) -> None:
        """Raise ValueError for settings transformers rejects (or that could only produce garbage)."""
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"`early_stopping` must be True, False or 'never'; got {self.early_stopping!r}.")
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"`max_new_tokens` must be greater than 0; got {self.max_new_tokens}.")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise ValueError(f"`num_beams` must be a positive integer; got {self.num_beams!r}.")
        if not isinstance(self.num_return_sequences, int) or self.num_return_sequences < 1:
            raise ValueError(f"`num_return_sequences` must be a positive integer; got {self.num_return_sequences!r}.")
        if self.num_return_sequences > 1:
            if self.num_beams == 1 and not self.do_sample:
                raise ValueError(f"Greedy decoding returns one sequence per input; `num_return_sequences` "
                                 f"{self.num_return_sequences} needs `do_sample=True` or `num_beams` >= it.")
            if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
                raise ValueError(f"`num_return_sequences` ({self.num_return_sequences}) must be <= `num_beams` "
                                 f"({self.num_beams}).")
        if self.do_sample:
            if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
                raise ValueError(f"`temperature` must be a strictly positive float when sampling; got "
                                 f"{self.temperature!r} (for greedy decoding set `do_sample=False`).")
            if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
                raise ValueError(f"`top_k` must be a non-negative integer; got {self.top_k!r}.")
            if self.top_p is not None and not 0 < self.top_p <= 1:
                raise ValueError(f"`top_p` must be in (0, 1]; got {self.top_p!r}.")
            if self.min_p is not None and not 0 <= self.min_p <= 1:
                raise ValueError(f"`min_p` must be in [0, 1]; got {self.min_p!r}.")
        if self.num_beams > 1 and abs(self.length_penalty) > 50:  # length ** length_penalty would overflow
            raise ValueError(f"`length_penalty` must be within [-50, 50]; got {self.length_penalty!r}.")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise ValueError(f"`repetition_penalty` must be strictly positive; got {self.repetition_penalty!r}.")
        if self.bad_words_ids is not None:
            ok = isinstance(self.bad_words_ids, list) and self.bad_words_ids and all(
                isinstance(seq, list) and seq and all(isinstance(t, int) and t >= 0 for t in seq)
                for seq in self.bad_words_ids)
            if not ok:
                raise ValueError(f"`bad_words_ids` must be a non-empty list of non-empty lists of token ids; got "
                                 f"{self.bad_words_ids!r}.")

    @property
    def eos_ids(self) -> list[int] | None:
        """eos_token_id as a list (one or several stop tokens), or None."""
        if self.eos_token_id is None:
            return None
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)

    @property
    def pad_id(self) -> int | None:
        """The id finished rows are padded with: pad_token_id, else the first eos (as transformers)."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        eos = self.eos_ids
        return eos[0] if eos else None

    def resolve_lengths(self, prompt_length: int, max_position_embeddings: int | None) -> tuple[int, int]:
        """(max_length, min_length) in tokens including the prompt (the decoder prompt for seq2seq).

        max_new_tokens wins over max_length; an unset max_length of 20 means 20 new tokens, capped at the
        model's max_position_embeddings; min_new_tokens wins over min_length.
        """
        max_length = self.max_length
        if self.max_new_tokens is not None:
            max_length = self.max_new_tokens + prompt_length
        elif "max_length" not in self.explicit and max_length == DEFAULT_MAX_LENGTH:
            max_length = DEFAULT_MAX_LENGTH + prompt_length
            if max_position_embeddings is not None:
                max_length = min(max_length, max_position_embeddings)
        min_length = self.min_length or 0
        if self.min_new_tokens is not None:
            min_length = self.min_new_tokens + prompt_length
        if prompt_length >= max_length:
            raise ValueError(f"The input is {prompt_length} tokens long but `max_length` is {max_length}: nothing "
                             f"can be generated. Set `max_new_tokens` (or a larger `max_length`).")
        return max_length, min_length


_FIELDS = {f.name for f in dataclasses.fields(GenerationConfig)} - {"explicit"}
# transformers settings inferline does not implement, with their no-op defaults.
_UNSUPPORTED_DEFAULTS = {"typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "num_beam_groups": 1,
                         "diversity_penalty": 0.0, "penalty_alpha": None, "encoder_repetition_penalty": 1.0,
                         "encoder_no_repeat_ngram_size": 0, "exponential_decay_length_penalty": None,
                         "sequence_bias": None, "guidance_scale": None, "renormalize_logits": False,
                         "remove_invalid_values": False, "constraints": None, "force_words_ids": None}


# Call-time values of the wrong type are a TypeError naming the parameter (not a failure inside decoding).
_INTS = {"max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams", "top_k", "no_repeat_ngram_size",
         "num_return_sequences", "pad_token_id", "bos_token_id", "decoder_start_token_id", "forced_bos_token_id"}
_INT_LISTS = {"eos_token_id", "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens"}
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GenerationConfig)}
_FLOATS = {"temperature", "top_p", "min_p", "repetition_penalty", "length_penalty"}


def _check_type(name: str, value: Any) -> None:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if value is None:
        return
    if name in _INTS or name in _INT_LISTS:
        ok = is_int(value) or (name in _INT_LISTS and isinstance(value, (list, tuple)) and all(map(is_int, value)))
        what = "an integer" + (" or a list of integers" if name in _INT_LISTS else "")
    elif name in _FLOATS:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")
        what = "a finite number"
    elif name == "do_sample":
        ok, what = isinstance(value, bool), "True or False"
    elif name == "stop_strings":
        ok = isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))
        what = "a string or a list of strings"
    else:
        return
    if not ok:
        raise TypeError(f"`{name}` must be {what}; got {type(value).__name__}: {value!r:.60}.")
