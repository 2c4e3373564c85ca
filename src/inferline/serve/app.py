"""The HTTP app over one pipeline: the Inference-API route, OpenAI-compatible routes, health, info, metrics.

Routes (see README "Serving"): `POST /` and `/predict` ({"inputs", "parameters"} → exactly what
`pipe(inputs, **parameters)` returns; a non-JSON body is the raw input, e.g. an image or audio file),
`POST /v1/embeddings` (feature-extraction), `POST /v1/chat/completions` and `/v1/completions`
(text-generation), `GET /health`, `/info`, `/metrics`.

Errors are JSON `{"error": message}` (plus `"field"` where one field is at fault), never a traceback:
422 for a malformed body, an unknown parameter or the pipeline's ValueError/TypeError; 413 for a body
over `max_body_mb`; 429 with Retry-After when `max_queue` requests already wait; 404 for a route the
task does not serve.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Callable

import jinja2

from .batcher import Batcher, Cancelled, QueueFull
from .metrics import Metrics

logger = logging.getLogger(__name__)

# Parameters the server owns: a client may not set them per request.
SERVER_PARAMETERS = frozenset({"batch_size", "num_workers", "streamer", "generation_config", "device"})
RAW_CONTENT_TYPES = ("image/", "audio/", "video/", "application/octet-stream")  # bodies that are the input
CLIENT_GONE = 499
# Exceptions a pipeline raises for bad input (a chat template's raise_exception is a jinja2 TemplateError).
BAD_INPUT = (ValueError, TypeError, KeyError, OSError, NotImplementedError, jinja2.TemplateError)  # nginx's status for a client that closed the connection (metrics only)


@dataclass
class Settings:
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    max_body_mb: float = 16.0
    workers: int = 1  # model threads running batches side by side
    model_name: str = ""


class HTTPError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}


class Engine:
    """What the routes need: run a pipeline call for a request, batched with its neighbours.

    Each call runs in a thread of its own (the pipeline's pre/postprocessing overlap the model); the
    batcher merges the model calls. A client that disconnects is cancelled, which frees its slot.
    """

    def __init__(self, pipe, settings: Settings, metrics: Metrics, batcher_class: type = Batcher):
        self.pipe, self.settings, self.metrics = pipe, settings, metrics
        self.batcher = batcher_class(pipe, settings.max_batch_size, settings.max_wait_ms, settings.max_queue,
                               workers=settings.workers, on_batch=metrics.batch_size.observe, on_depth=metrics.queue_depth.set)
        self.threads = ThreadPoolExecutor(max_workers=max(8, 2 * settings.max_batch_size),
                                          thread_name_prefix="inferline-request")

    def submit(self, fn: Callable[[], Any], seed: int | None = None):
        """Admit a request and start `fn` in a request thread → (ticket, asyncio future); 429 when full."""
        try:
            ticket = self.batcher.admit(seed)
        except QueueFull as error:
            raise HTTPError(429, f"Too many requests waiting: {error}. Retry later.",
                            headers={"Retry-After": "1"}) from None
        work = asyncio.get_running_loop().run_in_executor(self.threads, self.batcher.run, ticket, fn)
        return ticket, work

    async def call(self, request, fn: Callable[[], Any], seed: int | None = None) -> Any:
        """Run `fn` for `request`; cancelled (its slot freed) if the client disconnects first."""
        ticket, work = self.submit(fn, seed)
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            self.cancel(ticket, work)
            raise HTTPError(CLIENT_GONE, "client disconnected")
        gone.cancel()
        return pipeline_result(work)

    def cancel(self, ticket, work) -> None:
        self.batcher.cancel(ticket)
        work.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no asyncio warning

    def close(self) -> None:
        self.batcher.close()
        self.threads.shutdown(wait=True)


def pipeline_result(future) -> Any:
    """The call's result, or the HTTPError its exception maps to (bad input → 422, never a 500 trace)."""
    try:
        return future.result()
    except Cancelled:
        raise HTTPError(CLIENT_GONE, "client disconnected") from None
    except BAD_INPUT as error:
        raise HTTPError(422, _message(error)) from None


def _message(error: BaseException) -> str:
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error) or type(error).__name__


async def _disconnected(request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def jsonable(value: Any) -> Any:
    """A pipeline result as plain JSON types (tensors and arrays → lists, objects → their fields)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # torch.Tensor, numpy arrays and scalars
        return jsonable(value.tolist())
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if hasattr(value, "messages"):  # a Conversation
        return jsonable(list(value.messages))
    if hasattr(value, "save") and hasattr(value, "size"):  # a PIL image → PNG, base64
        import base64
        import io

        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()
    return str(value)


def check_parameters(parameters: Any, field: str = "parameters") -> dict:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise HTTPError(422, f"`{field}` must be a JSON object; got {type(parameters).__name__}.", field)
    owned = sorted(SERVER_PARAMETERS & set(parameters))
    if owned:
        raise HTTPError(422, f"Unknown parameter(s) {owned}: the server sets these (see --max-batch-size).",
                        f"{field}.{owned[0]}")
    return parameters


async def read_body(request, max_bytes: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed the limit."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise HTTPError(413, f"The body ({int(length)} bytes) exceeds the limit of {max_bytes} bytes "
                             f"(--max-body-mb).")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPError(413, f"The body exceeds the limit of {max_bytes} bytes (--max-body-mb).")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request, max_bytes: int) -> dict:
    body = await read_body(request, max_bytes)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPError(422, f"The body is not valid JSON: {error}.", "body") from None
    if not isinstance(data, dict):
        raise HTTPError(422, f"The body must be a JSON object; got {type(data).__name__}.", "body")
    return data


def error_response(error: HTTPError):
    from starlette.responses import JSONResponse

    content = {"error": error.message}
    if error.field is not None:
        content["field"] = error.field
    return JSONResponse(content, status_code=error.status, headers=error.headers)


def build_app(pipe, settings: Settings | None = None, engine: Engine | None = None, metrics: Metrics | None = None):
    """The Starlette app serving `pipe`.

    >>> app = build_app(pipeline("text-classification", model=M), Settings(max_batch_size=16))
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from . import openai

    settings = settings or Settings()
    metrics = metrics or Metrics()
    engine = engine or Engine(pipe, settings, metrics)
    max_bytes = int(settings.max_body_mb * 1024 * 1024)

    def route(name: str, handler):
        async def endpoint(request):
            start = time.perf_counter()
            try:
                response = await handler(request)
            except HTTPError as error:
                response = error_response(error)
            except Exception:  # noqa: BLE001 - a bug of ours: logged, answered without a trace
                logger.exception("Unhandled error on %s", name)
                response = JSONResponse({"error": "internal server error"}, status_code=500)
            metrics.observe_request(name, response.status_code, time.perf_counter() - start)
            return response

        return endpoint

    async def predict(request):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith(RAW_CONTENT_TYPES):  # JSON (also curl -d's form type)
            data = await read_json(request, max_bytes)
            if "inputs" not in data:
                raise HTTPError(422, "The body needs an `inputs` field (the pipeline's input).", "inputs")
            unknown = sorted(set(data) - {"inputs", "parameters", "options"})
            if unknown:
                raise HTTPError(422, f"Unknown field(s) {unknown}; accepted: inputs, parameters.", unknown[0])
            inputs, parameters = data["inputs"], check_parameters(data.get("parameters"))
        else:  # a raw image / audio file: the input itself
            inputs, parameters = await read_body(request, max_bytes), {}
            if not inputs:
                raise HTTPError(422, "The body is empty; send the input file.", "body")
        result = await engine.call(request, lambda: pipe(inputs, batch_size=settings.max_batch_size, **parameters))
        return JSONResponse(jsonable(result))

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def info(request):
        return JSONResponse({
            "task": pipe.task, "model": settings.model_name, "dtype": str(pipe.dtype).replace("torch.", ""),
            "device": str(pipe.device), "pipeline": type(pipe).__name__,
            "parameters": {k: v for k, v in vars(settings).items() if k != "model_name"},
            "routes": sorted(r.path for r in routes)})

    async def prometheus(request):
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    routes = [Route("/", route("/", predict), methods=["POST"]),
              Route("/predict", route("/predict", predict), methods=["POST"]),
              Route("/health", route("/health", health), methods=["GET"]),
              Route("/info", route("/info", info), methods=["GET"]),
              Route("/metrics", prometheus, methods=["GET"])]
    for path, handler in openai.routes(pipe, engine, settings, max_bytes).items():
        routes.append(Route(path, route(path, handler), methods=["POST"]))

    async def lifespan(app):
        yield
        engine.close()

    from contextlib import asynccontextmanager

    app = Starlette(routes=routes, lifespan=asynccontextmanager(lifespan))
    app.state.engine, app.state.metrics = engine, metrics
    return app
