"""Chat templates: a conversation (a list of {"role", "content"} messages) → the prompt text a chat model
was trained on.

The template is the checkpoint's Jinja source, rendered as transformers 4.57.6 `apply_chat_template`
renders it: a sandboxed, immutable environment with `trim_blocks` / `lstrip_blocks`, the loop controls
and `{% generation %}` tags, the helpers `raise_exception(message)` and `strftime_now(format)`, a
`tojson` filter that does not HTML-escape, and the tokenizer's special tokens (bos_token, eos_token, ...)
as variables beside `messages` and `add_generation_prompt`.

Where templates live: `chat_template.jinja` (plus named ones in `additional_chat_templates/*.jinja`),
else `chat_template` in tokenizer_config.json (a string, or a list of {"name", "template"}), else the
older processor file `chat_template.json`.
"""

from __future__ import annotations

import copy
import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

# Marks the end of the final message while rendering with continue_final_message; everything the template
# adds after it (end-of-turn tokens) is then cut off, so the model continues that message.
_CONTINUE_MARK = "INFERLINE_CONTINUE_FINAL_MESSAGE "


def load_chat_template(folder: str | Path, config: dict[str, Any]) -> str | list[dict] | None:
    """The checkpoint's template(s) in tokenizer_config.json's form: one string, or [{"name", "template"}]."""
    folder = Path(folder)
    named = {}
    if (folder / "chat_template.jinja").is_file():
        named["default"] = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    extra = folder / "additional_chat_templates"
    if extra.is_dir():
        for path in sorted(extra.glob("*.jinja")):
            named[path.name[: -len(".jinja")]] = path.read_text(encoding="utf-8")
    if named:
        if list(named) == ["default"]:
            return named["default"]
        return [{"name": k, "template": v} for k, v in named.items()]
    if config.get("chat_template") is not None:
        return config["chat_template"]
    legacy = folder / "chat_template.json"
    if legacy.is_file():
        return json.loads(legacy.read_text(encoding="utf-8")).get("chat_template")
    return None


def as_templates(value) -> str | dict[str, str] | None:
    """tokenizer_config.json's `chat_template` value → one template string, or {name: template}."""
    if isinstance(value, (list, tuple)):
        return {item["name"]: item["template"] for item in value}
    return value


def select_template(templates: str | dict[str, str] | None, chat_template: str | None = None,
                    tools: list | None = None) -> str:
    """The template to render: `chat_template` (a template, or the name of one), else the model's default."""
    if isinstance(templates, dict):
        if chat_template is not None:
            return templates.get(chat_template, chat_template)
        if tools is not None and "tool_use" in templates:
            return templates["tool_use"]
        if "default" in templates:
            return templates["default"]
        raise ValueError(f"This model has several chat templates and none named 'default'; pass `chat_template=` "
                         f"with one of {sorted(templates)}.")
    if chat_template is not None:
        return chat_template
    if templates is None:
        raise ValueError("This tokenizer has no chat template, so chat messages cannot be formatted: the checkpoint "
                         "has no chat_template.jinja or tokenizer_config.json 'chat_template'. Pass a plain string "
                         "prompt, or give the tokenizer a template (tokenizer.chat_template = '...').")
    return templates


def render_chat(template: str, messages, add_generation_prompt: bool = False, continue_final_message: bool = False,
                **variables) -> str:
    """Render one conversation. `variables` (special tokens, tools, documents, template options) are passed
    to the template; with `continue_final_message` the text ends inside the final message."""
    if hasattr(messages, "messages"):  # a Conversation
        messages = messages.messages
    messages = list(messages)
    if continue_final_message and add_generation_prompt:
        raise ValueError("`continue_final_message` and `add_generation_prompt` cannot both be True: the first "
                         "continues the last message, the second starts a new assistant message.")
    final_text = None
    if continue_final_message:
        if not messages:
            raise ValueError("`continue_final_message` needs a final message to continue; the chat is empty.")
        messages = copy.deepcopy(messages)
        final_text = _mark_final_message(messages[-1])
    text = _compile(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **variables)
    if final_text is None:
        return text
    mark = _CONTINUE_MARK.strip()
    if final_text.strip() not in text or mark not in text:
        raise ValueError("`continue_final_message` is set but the final message does not appear in the rendered "
                         "chat: the chat template drops or rewrites part of it.")
    at = text.rindex(mark)
    # Templates that keep the message verbatim keep the mark's trailing space; others trimmed the message.
    return text[:at] if text[at:at + len(_CONTINUE_MARK)] == _CONTINUE_MARK else text[:at].rstrip()


def check_messages(messages: list) -> None:
    """A pipeline's chat input: a non-empty list of {"role", "content"} dicts, or a ValueError."""
    if not messages:
        raise ValueError("A chat needs at least one message; got an empty list.")
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"Each chat message must be a dict with 'role' and 'content' keys; got {message!r:.100}.")
        if not isinstance(message["role"], str):
            raise TypeError(f"A chat message's 'role' must be a string such as 'user'; got {message['role']!r:.60}.")
        content = message["content"]
        if not (content is None or isinstance(content, str) or (
                isinstance(content, (list, tuple)) and all(isinstance(block, dict) for block in content))):
            raise TypeError(f"A chat message's 'content' must be a string (or a list of content blocks); got "
                            f"{type(content).__name__}: {content!r:.60}.")


def _mark_final_message(message: dict) -> str:
    """Append the continue mark to the final message's (last) text; returns that text before marking."""
    content = message["content"]
    if isinstance(content, (list, tuple)):
        for block in reversed(content):
            if "text" in block:
                text, block["text"] = block["text"], block["text"] + _CONTINUE_MARK
                return text
        raise ValueError("`continue_final_message` is set but the final message has no text block to continue.")
    message["content"] = content + _CONTINUE_MARK
    return content


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """`{% generation %}...{% endgeneration %}` (marks assistant text for training masks): rendered as is."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)
