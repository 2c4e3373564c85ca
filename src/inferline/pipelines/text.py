"""Text input checks and tokenisation shared by the text pipelines.

Over-long text is truncated to what the model takes, with a one-time warning, instead of crashing
inside the model; `truncation=False` turns that into an error naming the length and the limit.
"""

from __future__ import annotations

from typing import Any

import torch

from ..processing.tokenizer import VERY_LARGE_INTEGER


def check_text(value: Any, name: str = "inputs") -> str:
    """A non-empty string, or a TypeError/ValueError that names the parameter."""
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string (or a list of strings); got {type(value).__name__}: "
                        f"{_short(value)}.")
    if not value.strip():
        raise ValueError(f"`{name}` is an empty string; give some text.")
    return value


def model_token_limit(pipe) -> int | None:
    """The longest sequence this model and tokenizer take: the smaller of the two limits."""
    limits = [getattr(pipe.model, "max_input_tokens", None), getattr(pipe.tokenizer, "model_max_length", None)]
    limits = [int(x) for x in limits if x is not None and x < VERY_LARGE_INTEGER]
    return min(limits) if limits else None


def encode(pipe, text, text_pair=None, truncation=None, max_length=None, add_special_tokens: bool = True,
           is_split_into_words: bool = False):
    """Tokenise one text (or pair) for a single model call, applying the truncation policy."""
    limit = model_token_limit(pipe)
    if max_length is not None:
        limit = min(max_length, limit) if limit else max_length
    encoding = pipe.tokenizer.encode(text, text_pair, add_special_tokens=add_special_tokens,
                                     is_split_into_words=is_split_into_words)[0]
    if limit is None or len(encoding.ids) <= limit:
        return encoding
    if truncation is False or truncation == "do_not_truncate":
        raise ValueError(f"The input is {len(encoding.ids)} tokens long but the model takes at most {limit}; "
                         f"pass truncation=True (the default) to cut it to {limit} tokens.")
    if truncation is None:
        pipe.warn_once("truncation", f"An input of {len(encoding.ids)} tokens was truncated to the model's "
                                     f"limit of {limit} tokens (pass truncation=False to get an error instead).")
    strategy = "longest_first" if truncation in (None, True) else truncation
    return pipe.tokenizer.encode(text, text_pair, add_special_tokens=add_special_tokens, truncation=strategy,
                                 max_length=limit, is_split_into_words=is_split_into_words)[0]


def encoding_tensors(encoding, names=("input_ids", "attention_mask", "token_type_ids")) -> dict[str, torch.Tensor]:
    """A tokenizers Encoding → 1-D int64 tensors under the model's input names."""
    values = {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask,
              "token_type_ids": encoding.type_ids}
    return {k: torch.tensor(values[k], dtype=torch.long) for k in names if k in values}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
