"""conversational: the chat API of transformers before 4.42 (a `Conversation` in, the same one out with
the model's reply appended), which tutorials still show. It runs on the text-generation pipeline.

>>> from inferline import Conversation, pipeline
>>> chatbot = pipeline("conversational", model="microsoft/DialoGPT-medium")
>>> conversation = chatbot(Conversation("Going to the movies tonight - any suggestions?"))
>>> conversation.generated_responses[-1]
'...'
>>> conversation.add_user_input("Is it an action movie?")
>>> conversation = chatbot(conversation)

As in transformers 4.41: the conversation is updated in place and returned, generation follows the
model's own config (greedy unless it says otherwise) with max_new_tokens=256 unless a length is given,
and the reply is the new tokens decoded without special tokens.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid

from .text import check_flag
from .text_generation import TextGenerationPipeline

logger = logging.getLogger(__name__)

# What transformers' tokenizers used before chat templates lived in checkpoints (DialoGPT's format:
# each message followed by the EOS token); used, with a warning, when the tokenizer has no template.
LEGACY_CHAT_TEMPLATE = "{% for message in messages %}{{ message.content }}{{ eos_token }}{% endfor %}"


class Conversation:
    """A chat history: `messages` ({"role", "content"} dicts) plus transformers 4.41's legacy helpers.

    >>> conversation = Conversation("Going to the movies tonight - any suggestions?")
    >>> conversation.append_response("The Big Lebowski.")
    >>> conversation.add_user_input("Is it good?")
    >>> conversation.past_user_inputs, conversation.generated_responses, conversation.new_user_input
    (['Going to the movies tonight - any suggestions?'], ['The Big Lebowski.'], 'Is it good?')
    """

    def __init__(self, messages: str | list[dict] | None = None, conversation_id: uuid.UUID | None = None,
                 **legacy):
        unknown = sorted(set(legacy) - {"text", "past_user_inputs", "generated_responses"})
        if unknown:
            raise TypeError(f"Unknown Conversation argument(s) {unknown}; accepted: messages, conversation_id and "
                            f"the legacy text, past_user_inputs, generated_responses.")
        if messages is None:
            text = legacy.get("text")
            messages = [] if text is None else [{"role": "user", "content": text}]
        elif isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        past, responses = legacy.get("past_user_inputs"), legacy.get("generated_responses")
        if responses is not None and past is None:
            raise ValueError("`generated_responses` cannot be given without `past_user_inputs`.")
        if past is not None:  # the old form: alternating user inputs and responses, before `messages`
            responses = responses or []
            history = []
            for i in range(max(len(past), len(responses))):
                history += [{"role": "user", "content": past[i]}] if i < len(past) else []
                history += [{"role": "assistant", "content": responses[i]}] if i < len(responses) else []
            messages = history + list(messages)
        self.uuid = conversation_id or uuid.uuid4()
        self.messages = list(messages)
        self._processed_user_inputs = 0

    def add_message(self, message: dict) -> None:
        if set(message) != {"role", "content"}:
            raise ValueError(f"A message must have exactly the keys 'role' and 'content'; got {sorted(message)}.")
        if message["role"] not in ("user", "assistant", "system"):
            raise ValueError(f"A message role must be 'user', 'assistant' or 'system'; got {message['role']!r}.")
        self.messages.append(message)

    def add_user_input(self, text: str, overwrite: bool = False) -> None:
        """Add the next user turn; a still-unanswered user message is kept (or replaced with `overwrite`)."""
        if self.messages and self.messages[-1]["role"] == "user":
            old = self.messages[-1]["content"]
            if overwrite:
                logger.warning('User input added while unprocessed input was existing: "%s" was overwritten with: '
                               '"%s".', old, text)
                self.messages[-1]["content"] = text
            else:
                logger.warning('User input added while unprocessed input was existing: "%s" new input ignored: '
                               '"%s". Set `overwrite` to True to overwrite unprocessed user input', old, text)
        else:
            self.messages.append({"role": "user", "content": text})

    def append_response(self, response: str) -> None:
        self.messages.append({"role": "assistant", "content": response})

    def mark_processed(self) -> None:
        """Count the user inputs so far as answered (only `past_user_inputs` reads this)."""
        self._processed_user_inputs = len(self._user_messages)

    @property
    def _user_messages(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "user"]

    @property
    def past_user_inputs(self) -> list[str]:
        """User inputs except a trailing unanswered one (unless mark_processed() counted it)."""
        users = self._user_messages
        if not users or self.messages[-1]["role"] != "user" or self._processed_user_inputs == len(users):
            return users
        return users[:-1]

    @property
    def generated_responses(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "assistant"]

    @property
    def new_user_input(self) -> str:
        return self._user_messages[-1]

    def iter_texts(self):
        """(is_user, text) for every message."""
        for message in self.messages:
            yield message["role"] == "user", message["content"]

    def __iter__(self):
        return iter(self.messages)

    def __getitem__(self, index):
        return self.messages[index]

    def __setitem__(self, index, message):
        self.messages[index] = message

    def __len__(self) -> int:
        return len(self.messages)

    def __eq__(self, other) -> bool:
        return isinstance(other, Conversation) and (self.uuid == other.uuid or self.messages == other.messages)

    __hash__ = None  # mutable, compared by content

    def __repr__(self) -> str:
        return f"Conversation id: {self.uuid}\n" + "".join(f"{m['role']}: {m['content']}\n" for m in self.messages)


class ConversationalPipeline(TextGenerationPipeline):
    """Reply to a Conversation (or a list of them, or a message list); returns the updated conversation(s)."""

    default_generation = {}  # the model's own settings; max_new_tokens=256 is added below

    def __call__(self, conversations=None, *args, **kwargs):
        if isinstance(conversations, list) and conversations and isinstance(conversations[0], dict):
            conversations = Conversation(conversations)
        elif isinstance(conversations, list) and conversations and isinstance(conversations[0], list):
            conversations = [Conversation(c) for c in conversations]
        if isinstance(conversations, Conversation):  # (it has __len__/__getitem__: not to be read as a dataset)
            return super().__call__([conversations], *args, **kwargs)[0]
        # A list in gives a list out, even of one (transformers 4.41 unwrapped a one-element list).
        return super().__call__(conversations, *args, **kwargs)

    def _is_single_input(self, inputs) -> bool:
        return False

    def _default_generation_config(self, config, tokenizer):
        config, defaulted = super()._default_generation_config(config, tokenizer)
        if config.max_new_tokens is None:  # the 4.41 default, unless a call gives a length
            config = dataclasses.replace(config, max_new_tokens=256)
            defaulted |= {"max_new_tokens"}
        return config, defaulted

    def _sanitize_parameters(self, min_length_for_response=None, minimum_tokens=None,
                             clean_up_tokenization_spaces=None, **generate_kwargs):
        # min_length_for_response / minimum_tokens: accepted and unused, as in transformers 4.41.
        preprocess, forward, _ = super()._sanitize_parameters(**generate_kwargs)
        postprocess = {} if clean_up_tokenization_spaces is None else \
            {"clean_up_tokenization_spaces": check_flag(clean_up_tokenization_spaces, "clean_up_tokenization_spaces")}
        return preprocess, forward, postprocess

    def preprocess(self, conversation, **params):
        if not isinstance(conversation, Conversation):
            raise TypeError(f"The conversational pipeline takes a Conversation, a list of them, or a list of "
                            f"{{'role', 'content'}} messages; got {type(conversation).__name__}.")
        encode_kwargs = dict(params.pop("tokenizer_encode_kwargs", None) or {})
        if self.tokenizer.chat_template is None and "chat_template" not in encode_kwargs:
            self.warn_once("legacy_template", "The tokenizer has no chat template; formatting the conversation as "
                                              "each message followed by the EOS token (DialoGPT's format).")
            encode_kwargs["chat_template"] = LEGACY_CHAT_TEMPLATE
        params.update(add_generation_prompt=True, continue_final_message=False, tokenizer_encode_kwargs=encode_kwargs)
        return {**super().preprocess(conversation.messages, **params), "conversation": conversation}

    def postprocess(self, output, clean_up_tokenization_spaces=True):
        new_tokens = output["sequences"][0, output["prompt_length"]:].tolist()
        answer = self.tokenizer.decode(new_tokens, skip_special_tokens=True,
                                       clean_up_tokenization_spaces=clean_up_tokenization_spaces)
        conversation = output["conversation"]
        conversation.add_message({"role": "assistant", "content": answer})
        return conversation
