"""OpenAI-compatible routes: /v1/embeddings (feature-extraction), /v1/chat/completions and /v1/completions
(text-generation), over the same pipeline and batcher as the Inference-API route.

Completions: `temperature: 0` decodes greedily, otherwise samples with `temperature` and `top_p` (no top-k, as
OpenAI); `seed` makes a sampled request reproducible (it then runs alone); `max_tokens` bounds the new tokens;
`stop` (a string or up to 4) ends the text before the stop string; `stream: true` answers with server-sent
events, one chunk per generated token, ending `data: [DONE]`.
Embeddings are pooled and normalised as the checkpoint's sentence-transformers config (modules.json,
1_Pooling) says; a checkpoint without one gets mean pooling, normalised to unit length.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

from ..generation.streamers import TextStreamer
from .app import BAD_INPUT, HTTPError, check_parameters, pipeline_result, read_json
from .batcher import Cancelled

_SAMPLING_FIELDS = {"model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "stream",
                    "n", "user", "stream_options"}
_CHAT_FIELDS = _SAMPLING_FIELDS | {"messages"}
_COMPLETION_FIELDS = _SAMPLING_FIELDS | {"prompt"}
_EMBEDDING_FIELDS = {"model", "input", "encoding_format", "user"}


def routes(pipe, engine, settings, max_bytes: int) -> dict:
    """path → handler for the OpenAI routes (a task that lacks one answers 404 saying which task serves it)."""

    def needs(task: str, path: str):
        if pipe.task != task:
            raise HTTPError(404, f"{path} is served for {task} models; this server runs {pipe.task!r}.")

    async def embeddings(request):
        needs("feature-extraction", "/v1/embeddings")
        data = _fields(await read_json(request, max_bytes), _EMBEDDING_FIELDS)
        texts = _texts(data.get("input"), "input")
        encoding = data.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise HTTPError(422, f"`encoding_format` must be 'float' or 'base64'; got {encoding!r}.", "encoding_format")
        normalize = _normalizes(pipe)
        vectors = await engine.call(request, lambda: pipe(texts, pooling="auto", normalize=normalize,
                                                          batch_size=settings.max_batch_size))
        tokens = sum(len(e[0].ids) for e in pipe.tokenizer.encode_batch(texts))
        return _json({"object": "list", "model": data.get("model") or settings.model_name,
                      "data": [{"object": "embedding", "index": i, "embedding": _encode_vector(v, encoding)}
                               for i, v in enumerate(vectors)],
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def chat_completions(request):
        needs("text-generation", "/v1/chat/completions")
        data = _fields(await read_json(request, max_bytes), _CHAT_FIELDS)
        return await _complete(request, data, [_messages(data.get("messages"))], chat=True)

    async def completions(request):
        needs("text-generation", "/v1/completions")
        data = _fields(await read_json(request, max_bytes), _COMPLETION_FIELDS)
        prompts = _texts(data.get("prompt"), "prompt")
        return await _complete(request, data, prompts, chat=False)

    async def _complete(request, data: dict, prompts: list, chat: bool):
        options = _sampling(data, pipe)
        stream = data.get("stream", False)
        if not isinstance(stream, bool):
            raise HTTPError(422, f"`stream` must be true or false; got {stream!r}.", "stream")
        if stream and len(prompts) > 1:
            raise HTTPError(422, "`stream` supports a single prompt; got a list.", "prompt")
        try:
            pipe._sanitize_parameters(**options.params)
            prompt_lengths = [int(pipe.preprocess(p)["input_ids"].numel()) for p in prompts]
        except BAD_INPUT as error:
            raise HTTPError(422, str(error), "messages" if chat else "prompt") from None
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time()),
                "model": data.get("model") or settings.model_name}
        if stream:
            return _stream(request, head, prompts[0], prompt_lengths[0], options, chat)
        results = await engine.call(request, lambda: pipe(prompts, batch_size=settings.max_batch_size,
                                                          **options.params), seed=options.seed)
        choices, completion_tokens = [], 0
        for index, (result, length) in enumerate(zip(results, prompt_lengths)):
            new_ids = result[0]["generated_token_ids"][length:]
            text, finish = options.finish(new_ids)
            completion_tokens += len(new_ids)
            choices.append({"index": index, "message": {"role": "assistant", "content": text},
                            "finish_reason": finish} if chat else
                           {"index": index, "text": text, "logprobs": None, "finish_reason": finish})
        usage = {"prompt_tokens": sum(prompt_lengths), "completion_tokens": completion_tokens,
                 "total_tokens": sum(prompt_lengths) + completion_tokens}
        return _json({**head, "object": "chat.completion" if chat else "text_completion", "choices": choices,
                      "usage": usage})

    def _stream(request, head, prompt, prompt_length: int, options, chat: bool):
        from starlette.responses import StreamingResponse

        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        streamer = _TokenStreamer(pipe.tokenizer, lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text))
        ticket, work = engine.submit(lambda: pipe(prompt, streamer=streamer, **options.params), seed=options.seed)
        work.add_done_callback(lambda f: pieces.put_nowait(None))
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(text: str | None, finish: str | None = None, role: bool = False) -> str:
            if chat:
                delta = {"role": "assistant", "content": ""} if role else {} if text is None else {"content": text}
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            return f"data: {json.dumps({**head, 'object': kind, 'choices': [choice]}, ensure_ascii=False)}\n\n"

        async def events():
            sent, text, finish = 0, "", None
            try:
                if chat:
                    yield chunk(None, role=True)
                while (piece := await pieces.get()) is not None:
                    text += piece
                    safe, stopped = options.stop_scan(text)
                    if safe > sent:
                        yield chunk(text[sent:safe])
                        sent = safe
                    if stopped:
                        finish = "stop"
                        break
                await work
                try:
                    result = pipeline_result(work)
                except HTTPError as error:
                    yield f"data: {json.dumps({'error': error.message})}\n\n"
                    yield "data: [DONE]\n\n"
                    return
                final, finish_all = options.finish(result[0]["generated_token_ids"][prompt_length:])
                if finish is None:
                    if len(final) > sent:  # what the streamer held back (a stop string's possible start)
                        yield chunk(final[sent:])
                    finish = finish_all
                yield chunk(None, finish=finish)
                yield "data: [DONE]\n\n"
            finally:
                if not work.done():  # the client went away (or a stop string ended the text): stop generating
                    streamer.cancelled = True
                    engine.cancel(ticket, work)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return {"/v1/embeddings": embeddings, "/v1/chat/completions": chat_completions, "/v1/completions": completions}


class _Options:
    """One request's generation parameters, and how its text ends (stop strings, max_tokens)."""

    def __init__(self, params: dict, stops: list[str], max_new: int | None, seed: int | None, tokenizer, eos):
        self.params, self.stops, self.max_new, self.seed = params, stops, max_new, seed
        self.tokenizer, self.eos = tokenizer, set(eos or ())

    def stop_scan(self, text: str) -> tuple[int, bool]:
        """(how much of `text` is safe to send, whether a stop string was reached)."""
        hits = [text.find(s) for s in self.stops if s in text]
        if hits:
            return min(hits), True
        hold = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return len(text) - hold, False

    def finish(self, new_ids: list[int]) -> tuple[str, str]:
        """The completion text of the new tokens (cut before a stop string) and OpenAI's finish_reason."""
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        end, stopped = self.stop_scan(text)
        if stopped:
            return text[:end], "stop"
        ran_out = self.max_new is not None and len(new_ids) >= self.max_new and not (new_ids and new_ids[-1] in self.eos)
        return text, "length" if ran_out else "stop"


def _sampling(data: dict, pipe) -> _Options:
    n = data.get("n", 1)
    if n != 1:
        raise HTTPError(422, f"`n` must be 1 (one choice per prompt); got {n!r}.", "n")
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    field = "max_completion_tokens" if "max_completion_tokens" in data else "max_tokens"
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise HTTPError(422, f"`{field}` must be a positive integer; got {max_tokens!r}.", field)
    temperature = _number(data, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(data, "top_p", 1.0, 0.0, 1.0)
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise HTTPError(422, f"`seed` must be an integer; got {seed!r}.", "seed")
    stop = data.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise HTTPError(422, f"`stop` must be a string or a list of up to 4 non-empty strings; got {stop!r}.", "stop")
    params: dict[str, Any] = {"return_tensors": True}
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    if temperature == 0:
        params["do_sample"] = False
    else:
        params.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    if stops:
        params["stop_strings"] = stops
    check_parameters(params)
    config = pipe.generation_config
    max_new = max_tokens if max_tokens is not None else config.max_new_tokens
    return _Options(params, stops, max_new, seed, pipe.tokenizer, config.eos_ids)


def _number(data: dict, name: str, default: float, low: float, high: float) -> float:
    value = data.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise HTTPError(422, f"`{name}` must be a number from {low} to {high}; got {value!r}.", name)
    if name == "top_p" and value == 0:
        raise HTTPError(422, "`top_p` must be above 0.", name)
    return float(value)


def _fields(data: dict, accepted: set[str]) -> dict:
    unknown = sorted(set(data) - accepted)
    if unknown:
        raise HTTPError(422, f"Unknown field(s) {unknown}; accepted: {', '.join(sorted(accepted))}.", unknown[0])
    return data


def _texts(value, field: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise HTTPError(422, f"`{field}` must be a string or a non-empty list of strings (token arrays are not "
                             f"accepted); got {json.dumps(value)[:80]}.", field)
    return texts


def _messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise HTTPError(422, "`messages` must be a non-empty list of {role, content} objects.", "messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise HTTPError(422, f"`messages[{i}]` must be an object with a string `role`.", f"messages[{i}].role")
        content = message.get("content")
        if isinstance(content, list):  # OpenAI's content parts: text parts only
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise HTTPError(422, f"`messages[{i}].content` parts must be text parts.", f"messages[{i}].content")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise HTTPError(422, f"`messages[{i}].content` must be a string.", f"messages[{i}].content")
        value[i] = {"role": message["role"], "content": content}
    return value


def _normalizes(pipe) -> bool:
    """Whether the checkpoint's sentence-transformers modules.json ends in Normalize (no modules.json: yes)."""
    folder = getattr(pipe.model, "checkpoint_dir", None)
    path = folder / "modules.json" if folder is not None else None
    if path is None or not path.is_file():
        return True
    return any(str(m.get("type", "")).endswith("Normalize") for m in json.loads(path.read_text()))


def _encode_vector(vector: list[float], encoding: str):
    if encoding == "float":
        return vector
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def _json(content: dict):
    from starlette.responses import JSONResponse

    return JSONResponse(content)


class _TokenStreamer(TextStreamer):
    """Releases the text of every new token at once (held back only while a character is incomplete)."""

    def __init__(self, tokenizer, emit):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.emit, self.cancelled = emit, False

    def put(self, ids) -> None:
        if self.cancelled:
            raise Cancelled()
        if self._next_is_prompt:
            self._next_is_prompt = False
            return
        self._ids.extend(ids.reshape(-1).tolist())
        text = self.tokenizer.decode(self._ids, **self.decode_kwargs)
        if not text.endswith("\ufffd"):
            self.on_text(text[self._printed:])
            self._printed = len(text)

    def on_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.emit(text)
