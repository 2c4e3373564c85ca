"""Streamers: text pieces of a generation as soon as they are printable.

The engine calls `put(ids)` once with the prompt and once per step with the new token, then `end()`.
Decoding is incremental like transformers' TextStreamer: the ids since the last flush are decoded
and only text up to the last space is released (a newline flushes everything; a trailing CJK
character is released at once), so words are never cut in half and byte-level pieces never show
half a character.
"""

from __future__ import annotations

from queue import Queue

import torch


class TextStreamer:
    """Incremental decoder; subclasses decide what to do with each finished piece (`on_text`)."""

    def __init__(self, tokenizer, skip_prompt: bool = False, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self._ids: list[int] = []
        self._printed = 0
        self._next_is_prompt = True

    def put(self, ids: torch.Tensor) -> None:
        """ids: (1, T) or (T,) new token ids of the one sequence being generated."""
        if ids.dim() > 1 and ids.shape[0] > 1:
            raise ValueError(f"Streaming supports one sequence at a time; got a batch of {ids.shape[0]}.")
        ids = ids.reshape(-1)
        if self.skip_prompt and self._next_is_prompt:
            self._next_is_prompt = False
            return
        self._ids.extend(ids.tolist())
        text = self.tokenizer.decode(self._ids, **self.decode_kwargs)
        if text.endswith("\n"):
            piece = text[self._printed:]
            self._ids, self._printed = [], 0
        elif text and _is_cjk(ord(text[-1])):
            piece = text[self._printed:]
            self._printed += len(piece)
        else:
            piece = text[self._printed:text.rfind(" ") + 1]
            self._printed += len(piece)
        self.on_text(piece)

    def end(self) -> None:
        """Flush what is left and signal the end of the stream."""
        piece = self.tokenizer.decode(self._ids, **self.decode_kwargs)[self._printed:] if self._ids else ""
        self._ids, self._printed, self._next_is_prompt = [], 0, True
        self.on_text(piece, stream_end=True)

    def on_text(self, text: str, stream_end: bool = False) -> None:
        raise NotImplementedError


class TextIteratorStreamer(TextStreamer):
    """Iterate the text pieces from another thread while `generate` runs.

    >>> streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    >>> Thread(target=generate, args=(model, ids, mask, config), kwargs={"streamer": streamer}).start()
    >>> text = "".join(streamer)

    `timeout` (seconds) bounds each wait for the next piece (queue.Empty when exceeded), so a consumer
    is not stuck forever if generation fails in its thread.
    """

    def __init__(self, tokenizer, skip_prompt: bool = False, timeout: float | None = None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.queue: Queue = Queue()
        self.timeout = timeout
        self._stop = object()

    def on_text(self, text: str, stream_end: bool = False) -> None:
        self.queue.put(text, timeout=self.timeout)
        if stream_end:
            self.queue.put(self._stop, timeout=self.timeout)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        value = self.queue.get(timeout=self.timeout)
        if value is self._stop:
            raise StopIteration
        return value


def _is_cjk(cp: int) -> bool:
    """A code point of the CJK Unified Ideographs blocks (not Hangul / kana, which use spaces)."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)
