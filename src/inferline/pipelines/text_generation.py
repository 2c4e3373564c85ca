"""text-generation: continue a prompt, or a chat, with a decoder-only language model.

>>> generator = pipeline("text-generation", model="openai-community/gpt2")
>>> generator("Hello, I'm a language model,", do_sample=False, max_new_tokens=5)
[{'generated_text': "Hello, I'm a language model, ..."}]
>>> chat = pipeline("text-generation", model="Qwen/Qwen2.5-0.5B-Instruct")
>>> chat([{"role": "user", "content": "What is the capital of France?"}], do_sample=False, max_new_tokens=7)
[{'generated_text': [{'role': 'user', 'content': 'What is the capital of France?'},
                     {'role': 'assistant', 'content': '...'}]}]

Inputs: a string, a chat (a list of {"role", "content"} messages, formatted with the model's chat
template), or a list / generator / dataset of either. Outputs: per input a list of {"generated_text"}
(prompt + continuation, or just the continuation with return_full_text=False; for a chat, the messages
with the reply appended) or {"generated_token_ids"} with return_tensors=True. Every generation parameter
(max_new_tokens, do_sample, num_beams, stop_strings, streamer, ...) is accepted at construction and call.
Unless the caller or the checkpoint's generation config sets them, generation uses max_new_tokens=256,
do_sample=True and temperature=0.7 (the order: see generation_defaults). Batches are left-padded; greedy
results do not depend on batch_size.
"""

from __future__ import annotations

import enum

import torch

from ..generation import generate
from ..processing.chat_template import check_messages
from .base import Pipeline
from .text import check_flag, check_max_length, check_truncation
from .generation_defaults import GENERATE_EXTRAS, GENERATION_PARAMETERS, GenerationDefaults, check_generate_extras

_ENCODE_KEYS = {"add_special_tokens", "truncation", "max_length", "padding"}


class ReturnType(enum.Enum):
    """What postprocess returns: token ids, the new text only, or prompt + new text (the default)."""

    TENSORS = 0
    NEW_TEXT = 1
    FULL_TEXT = 2


class TextGenerationPipeline(GenerationDefaults, Pipeline):
    """Complete prompts or chats; see the module docstring for inputs, parameters and outputs."""

    padding_side = "left"
    # Used only where neither the caller nor the checkpoint's generation config sets them.
    default_generation = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}

    def __init__(self, model, tokenizer=None, **kwargs):
        if tokenizer is None:
            raise ValueError(f"The {type(self).__name__} needs a tokenizer; the checkpoint has none, pass "
                             f"`tokenizer=`.")
        if getattr(model, "is_encoder_decoder", False):
            raise ValueError("text-generation needs a decoder-only (causal-lm) model; for an encoder-decoder use "
                             "the text2text-generation task.")
        super().__init__(model, tokenizer, **kwargs)
        self.init_generation(self.model, self.tokenizer, self.task)
        if "prefix" not in self._preprocess_params and self.prefix:
            pre, fwd, _ = self._sanitize_parameters(prefix=self.prefix)
            self._preprocess_params, self._forward_params = {**self._preprocess_params, **pre}, \
                {**self._forward_params, **fwd}

    # ----- the contract -----
    def _is_single_input(self, inputs) -> bool:
        return len(inputs) > 0 and isinstance(inputs[0], dict)  # one chat, not a batch

    def _sanitize_parameters(self, return_full_text=None, return_tensors=None, return_text=None, return_type=None,
                             clean_up_tokenization_spaces=None, prefix=None, handle_long_generation=None,
                             stop_sequence=None, truncation=None, max_length=None, continue_final_message=None,
                             add_generation_prompt=None, skip_special_tokens=None, tokenizer_encode_kwargs=None,
                             add_special_tokens=None, padding=None, **generate_kwargs):
        unknown = sorted(k for k in generate_kwargs if k not in GENERATION_PARAMETERS | GENERATE_EXTRAS)
        if unknown:
            raise TypeError(f"Unknown parameter(s) for {self.task or 'text-generation'}: {unknown}. Accepted: the "
                            f"pipeline's (return_full_text, return_tensors, prefix, stop_sequence, "
                            f"handle_long_generation, continue_final_message, ...) and the generation parameters "
                            f"{sorted(GENERATION_PARAMETERS | GENERATE_EXTRAS)}.")
        check_generate_extras(generate_kwargs)
        if max_length is not None:
            generate_kwargs["max_length"] = max_length
        preprocess = {k: v for k, v in dict(
            add_special_tokens=add_special_tokens, padding=padding, truncation=truncation, prefix=prefix,
            continue_final_message=continue_final_message, add_generation_prompt=add_generation_prompt).items()
            if v is not None}
        if handle_long_generation is not None:
            if handle_long_generation != "hole":
                raise ValueError(f"`handle_long_generation` must be None or 'hole'; got {handle_long_generation!r}.")
            preprocess["handle_long_generation"] = handle_long_generation
        if tokenizer_encode_kwargs is not None:
            if not isinstance(tokenizer_encode_kwargs, dict):
                raise TypeError(f"`tokenizer_encode_kwargs` must be a dict; got "
                                f"{type(tokenizer_encode_kwargs).__name__}.")
            preprocess["tokenizer_encode_kwargs"] = tokenizer_encode_kwargs
        preprocess.update(generate_kwargs)  # the lengths matter to handle_long_generation

        forward = dict(generate_kwargs)
        if prefix:
            prefix_ids = self.tokenizer.encode(prefix, add_special_tokens=bool(add_special_tokens))[0].ids
            forward["prefix_length"] = len(prefix_ids)
        if stop_sequence is not None:  # as transformers: each token of the stop sequence ends generation
            forward["eos_token_id"] = self.tokenizer.encode(stop_sequence, add_special_tokens=False)[0].ids

        postprocess = {}
        if return_type is None and return_full_text is not None:
            if return_text is not None or return_tensors:
                raise ValueError("`return_full_text` cannot be combined with `return_text` or `return_tensors`.")
            return_type = ReturnType.FULL_TEXT if return_full_text else ReturnType.NEW_TEXT
        if return_type is None and return_tensors:  # documented: False returns text (transformers: tensors)
            if return_text is not None:
                raise ValueError("`return_text` cannot be combined with `return_tensors`.")
            return_type = ReturnType.TENSORS
        if return_type is not None:
            postprocess["return_type"] = _return_type(return_type)
        for name, value in (("clean_up_tokenization_spaces", clean_up_tokenization_spaces),
                            ("continue_final_message", continue_final_message),
                            ("skip_special_tokens", skip_special_tokens)):
            if value is not None:
                postprocess[name] = check_flag(value, name)
        return preprocess, forward, postprocess

    def preprocess(self, prompt, prefix="", handle_long_generation=None, add_special_tokens=None, truncation=None,
                   padding=None, max_length=None, continue_final_message=None, add_generation_prompt=None,
                   tokenizer_encode_kwargs=None, **generate_kwargs):
        options = {k: v for k, v in dict(add_special_tokens=add_special_tokens, truncation=truncation,
                                         max_length=max_length).items() if v is not None}
        options.update(tokenizer_encode_kwargs or {})
        messages = _chat_messages(prompt)
        if messages is not None:
            check_messages(messages)
            if continue_final_message is None:  # a chat ending with the assistant is a prefill to continue
                continue_final_message = messages[-1]["role"] == "assistant"
            if add_generation_prompt is None:
                add_generation_prompt = not continue_final_message
            template_kwargs = {k: v for k, v in options.items() if k not in _ENCODE_KEYS}
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                      continue_final_message=continue_final_message,
                                                      **template_kwargs)
            ids = self._encode(text, False, options.get("truncation"), options.get("max_length"))
        else:
            if not isinstance(prompt, str):
                raise TypeError(f"A text-generation input must be a string or a chat (a list of {{'role', "
                                f"'content'}} dicts); got {type(prompt).__name__}.")
            unknown = sorted(set(options) - _ENCODE_KEYS)
            if unknown:
                raise TypeError(f"Unknown `tokenizer_encode_kwargs` {unknown}; accepted: {sorted(_ENCODE_KEYS)}.")
            ids = self._encode((prefix or "") + prompt, options.get("add_special_tokens", True),
                               options.get("truncation"), options.get("max_length"))
        empty = not ids
        if empty:  # transformers starts an empty prompt from the BOS token
            if self.generation_config.bos_token_id is None:
                raise ValueError("The prompt is empty (it encodes to no tokens) and the model has no bos_token_id "
                                 "to start from; give some text.")
            ids = [self.generation_config.bos_token_id]
        if handle_long_generation == "hole":
            ids = self._hole(ids, {**generate_kwargs, **({"max_length": max_length} if max_length else {})})
        input_ids = torch.tensor(ids, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                "prompt_text": prompt, "empty_prompt": empty}

    def _forward(self, model_inputs, prefix_length=0, streamer=None, generation_config=None, use_cache=None,
                 **generate_kwargs):
        ids, mask = model_inputs["input_ids"], model_inputs["attention_mask"]  # (B, P), left-padded
        config = self.resolve_generation_config(generate_kwargs, generation_config)
        if prefix_length and config.max_new_tokens is None:  # the prefix's tokens do not count against max_length
            adjust = {"max_length": config.max_length + prefix_length}
            if config.min_new_tokens is None and "min_length" in generate_kwargs:
                adjust["min_length"] = config.min_length + prefix_length
            config = config.update(**adjust)
        try:
            out = generate(self.model, ids, mask, config, streamer=streamer, tokenizer=self.tokenizer)
        except IndexError as error:  # learned position embeddings (GPT-2) end at the model's limit
            limit = getattr(self.model, "max_input_tokens", None)
            max_length, _ = config.resolve_lengths(ids.shape[1], limit)
            if limit is None or max_length <= limit:
                raise
            raise ValueError(f"The prompt ({ids.shape[1]} tokens) and the tokens to generate (up to {max_length} in "
                             f"all) exceed the {limit} positions this model has; shorten the prompt, pass "
                             f"truncation=True with max_length, or handle_long_generation='hole'.") from error
        out = out.view(ids.shape[0], -1, out.shape[-1])  # (B, num_return_sequences, T)
        pads = (mask == 0).sum(1).tolist()
        # Per row: its own tokens (no left padding), cut where all its sequences had finished, as unbatched.
        sequences = [_trim_finished(out[row, :, pad:], ids.shape[1] - pad, config.eos_ids).cpu()
                     for row, pad in enumerate(pads)]
        return {"sequences": sequences, "prompt_length": [ids.shape[1] - pad for pad in pads]}

    def postprocess(self, output, return_type=ReturnType.FULL_TEXT, clean_up_tokenization_spaces=True,
                    continue_final_message=None, skip_special_tokens=None):
        sequences, prompt, prompt_length = output["sequences"].tolist(), output["prompt_text"], output["prompt_length"]
        if return_type == ReturnType.TENSORS:
            return [{"generated_token_ids": seq} for seq in sequences]
        options = dict(skip_special_tokens=True if skip_special_tokens is None else skip_special_tokens,
                       clean_up_tokenization_spaces=clean_up_tokenization_spaces)
        start = 0 if output["empty_prompt"] else len(self.tokenizer.decode(sequences[0][:prompt_length], **options))
        records = []
        for seq in sequences:
            text = self.tokenizer.decode(seq, **options)[start:]
            if return_type == ReturnType.FULL_TEXT:
                text = _with_prompt(prompt, text, continue_final_message)
            records.append({"generated_text": text})
        return records

    # ----- helpers -----
    def _encode(self, text: str, add_special_tokens: bool, truncation, max_length) -> list[int]:
        if not isinstance(add_special_tokens, bool):
            raise TypeError(f"`add_special_tokens` must be True or False; got {add_special_tokens!r:.60}.")
        check_truncation(truncation)
        if max_length is not None and truncation not in (None, False, "do_not_truncate"):
            check_max_length(max_length)
        truncation = truncation if truncation not in (None, "do_not_truncate") else False
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens, truncation=truncation,
                                     max_length=max_length if truncation else None)[0].ids

    def _hole(self, ids: list[int], generate_kwargs: dict) -> list[int]:
        """Cut the prompt from the left so the prompt and the new tokens fit the tokenizer's limit."""
        config = self.resolve_generation_config({k: v for k, v in generate_kwargs.items()
                                                 if k in GENERATION_PARAMETERS})
        new_tokens = config.max_new_tokens if config.max_new_tokens is not None else config.max_length - len(ids)
        if new_tokens < 0:
            raise ValueError(f"handle_long_generation='hole': the prompt ({len(ids)} tokens) is already longer than "
                             f"max_length ({config.max_length}); set max_new_tokens.")
        limit = self.tokenizer.model_max_length
        if len(ids) + new_tokens <= limit:
            return ids
        keep = limit - new_tokens
        if keep <= 0:
            raise ValueError(f"handle_long_generation='hole' cannot help: {new_tokens} new tokens alone exceed the "
                             f"model's {limit}-token limit.")
        return ids[-keep:]

    def _pad_values(self) -> dict:
        pad = self.tokenizer.pad_token_id
        pad = self.generation_config.pad_id if pad is None else pad  # no pad token: the EOS (masked anyway)
        return {"input_ids": 0 if pad is None else pad}


def _chat_messages(prompt) -> list | None:
    """The messages of a chat input (a list of dicts, or an object with `.messages`), else None."""
    if hasattr(prompt, "messages"):
        return list(prompt.messages)
    if isinstance(prompt, (list, tuple)):
        return list(prompt)
    return None


def _with_prompt(prompt, new_text: str, continue_final_message: bool | None):
    """Full text: the prompt string + continuation, or the chat with the reply appended (or continued)."""
    messages = _chat_messages(prompt)
    if messages is None:
        return prompt + new_text
    if continue_final_message is None:
        continue_final_message = messages[-1]["role"] == "assistant"
    if continue_final_message:
        last = messages[-1]
        return messages[:-1] + [{"role": last["role"], "content": last["content"] + new_text}]
    return messages + [{"role": "assistant", "content": new_text}]


def _trim_finished(sequences: torch.Tensor, prompt_length: int, eos: list[int] | None) -> torch.Tensor:
    """sequences (N, T) of one input → cut after the last point any of them was still generating: after
    each one's first EOS (later tokens are padding), or nothing if one ran to the length limit."""
    if not eos:
        return sequences
    new = sequences[:, prompt_length:]
    is_eos = torch.isin(new, torch.tensor(eos, device=new.device))
    ends = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, new.shape[1])
    return sequences[:, : prompt_length + int(ends.max())]


def _return_type(value) -> ReturnType:
    """A ReturnType (ours or transformers'), its value, or its name."""
    name = getattr(value, "name", value)
    if isinstance(name, str) and name.upper() in ReturnType.__members__:
        return ReturnType[name.upper()]
    if isinstance(name, int) and not isinstance(name, bool) and name in (0, 1, 2):
        return ReturnType(name)
    raise ValueError(f"`return_type` must be a ReturnType (TENSORS, NEW_TEXT, FULL_TEXT); got {value!r}.")
