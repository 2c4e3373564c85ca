"""Text input checks and tokenisation shared by the text pipelines.

Over-long text is truncated to what the model takes, with a one-time warning, instead of crashing
inside the model; `truncation=False` turns that into an error naming the length and the limit.
"""

from __future__ import annotations

import array
from typing import Any

import torch

from ..processing.tokenizer import VERY_LARGE_INTEGER, truncation_strategy

_MODEL_LIMIT = object()  # encode_many's default limit: what the model and tokenizer take


def check_text(value: Any, name: str = "inputs") -> str:
    """A non-empty string, or a TypeError/ValueError that names the parameter."""
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string (or a list of strings); got {type(value).__name__}: "
                        f"{_short(value)}.")
    if not value.strip():
        raise ValueError(f"`{name}` is an empty string; give some text.")
    return value


def check_max_length(value: Any, name: str = "max_length") -> int:
    """A positive int, or a ValueError that names the parameter."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer (a number of tokens); got {_short(value)}.")
    return value


def check_flag(value: Any, name: str) -> bool:
    """True or False (None is for "not given" and never reaches here), else a TypeError naming the parameter."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False; got {_short(value)}.")
    return value


def check_truncation(value: Any):
    """True/False or a truncation strategy name (or transformers' TruncationStrategy), else a ValueError."""
    name = getattr(value, "value", value)
    if not isinstance(name, bool) and name != "do_not_truncate":
        truncation_strategy(name)  # raises a ValueError naming what is accepted
    return value


TOKENIZER_OPTIONS = ("truncation", "max_length", "add_special_tokens", "padding")


def check_tokenizer_options(options: Any, name: str) -> dict:
    """A dict of tokenizer options (keys among TOKENIZER_OPTIONS), each checked; padding is dropped (batches
    are padded per batch, which never changes the results)."""
    if not isinstance(options, dict):
        raise TypeError(f"`{name}` must be a dict with keys among {', '.join(TOKENIZER_OPTIONS)}; got "
                        f"{type(options).__name__}: {_short(options)}.")
    unknown = [k for k in options if k not in TOKENIZER_OPTIONS]
    if unknown:
        raise ValueError(f"Unsupported `{name}` {_short(unknown)}; accepted: {', '.join(TOKENIZER_OPTIONS)}.")
    checked = {k: v for k, v in options.items() if k != "padding" and v is not None}
    if "truncation" in checked:
        check_truncation(checked["truncation"])
    if "max_length" in checked:
        check_max_length(checked["max_length"])
    if not isinstance(checked.get("add_special_tokens", True), bool):
        raise TypeError(f"`add_special_tokens` in `{name}` must be True or False; got "
                        f"{_short(checked['add_special_tokens'])}.")
    return checked


def model_token_limit(pipe) -> int | None:
    """The longest sequence this model and tokenizer take: the smaller of the two limits."""
    limits = [getattr(pipe.model, "max_input_tokens", None), getattr(pipe.tokenizer, "model_max_length", None)]
    limits = [int(x) for x in limits if x is not None and x < VERY_LARGE_INTEGER]
    return min(limits) if limits else None


def encode(pipe, text, text_pair=None, truncation=None, max_length=None, add_special_tokens: bool = True,
           is_split_into_words: bool = False):
    """Tokenise one text (or pair) for a single model call, applying the truncation policy of `encode_many`."""
    return encode_many(pipe, [text], None if text_pair is None else [text_pair], truncation=truncation,
                       max_length=max_length, add_special_tokens=add_special_tokens,
                       is_split_into_words=is_split_into_words)[0]


def encode_many(pipe, texts: list, text_pairs: list | None = None, truncation=None, max_length=None,
                add_special_tokens: bool = True, is_split_into_words: bool = False, limit=_MODEL_LIMIT,
                tokenizer=None, offsets: bool = True) -> list:
    """Tokenise texts (or pairs; a pair may be None) in one Rust call, one encoding each, each tokenised once.

    `limit` defaults to what the model and tokenizer take (capped by `max_length`). Longer inputs are cut
    to it: silently with truncation=True or a strategy, with a one-time warning when truncation is None,
    and truncation=False (or "do_not_truncate") makes them a ValueError naming the length and the limit.
    offsets=False: a caller that never reads character offsets lets the tokenizer skip them.
    """
    tokenizer = tokenizer or pipe.tokenizer
    truncation = getattr(truncation, "value", truncation)  # transformers' TruncationStrategy enum
    if limit is _MODEL_LIMIT:
        limit = model_token_limit(pipe)
        if max_length is not None:
            limit = min(max_length, limit) if limit else max_length
    refuse = truncation is False or truncation == "do_not_truncate"
    options = dict(add_special_tokens=add_special_tokens, is_split_into_words=is_split_into_words, offsets=offsets)
    if limit is None or refuse:
        encodings = [e[0] for e in tokenizer.encode_batch(texts, text_pairs, **options)]
        for encoding in encodings:
            if limit is not None and len(encoding.ids) > limit:
                raise ValueError(f"The input is {len(encoding.ids)} tokens long but the model takes at most {limit}; "
                                 f"pass truncation=True (the default) to cut it to {limit} tokens.")
        return encodings
    strategy = "longest_first" if truncation in (None, True) else truncation
    encodings = [e[0] for e in tokenizer.encode_batch(texts, text_pairs, truncation=strategy, max_length=limit,
                                                      **options)]
    if truncation is None and any(e.overflowing for e in encodings):
        pipe.warn_once("truncation", f"An input longer than the model's limit of {limit} tokens was truncated to "
                                     f"{limit} tokens (pass truncation=False to get an error instead).")
    return encodings


def encoding_tensors(encoding, names=("input_ids", "attention_mask", "token_type_ids")) -> dict[str, torch.Tensor]:
    """A tokenizers Encoding → 1-D int64 tensors under the model's input names (each list read from the Rust
    encoding only when the model takes it)."""
    return {k: int64_tensor(getattr(encoding, _ENCODING_FIELDS[k])) for k in names if k in _ENCODING_FIELDS}


_ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def int64_tensor(values: list[int]) -> torch.Tensor:
    """torch.tensor(values, dtype=torch.long), through an array's buffer: a third of the time for a request's
    few dozen ids (torch.tensor parses the list item by item)."""
    return torch.frombuffer(array.array("q", values), dtype=torch.long) if values else \
        torch.zeros(0, dtype=torch.long)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
