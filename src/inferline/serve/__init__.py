"""`inferline serve`: one pipeline behind HTTP, with dynamic batching (`pip install "inferline[serve]"`).

>>> from inferline.serve import serve
>>> serve("text-classification", "distilbert/distilbert-base-uncased-finetuned-sst-2-english", port=8000)

`build_app(pipe, Settings(...))` gives the Starlette app for any ASGI server; `serve` builds the pipeline
and runs it under uvicorn. SIGTERM (or Ctrl-C) stops accepting connections, finishes the requests in
flight and returns normally, so the process exits with status 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from .. import pipeline

logger = logging.getLogger(__name__)

_EXTRA = 'The server needs the serve extra: pip install "inferline[serve]"'


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{_EXTRA} ({error}).") from error


def build_app(pipe, settings=None, **kwargs):
    """The Starlette app serving `pipe` (see `inferline.serve.app`)."""
    _require("starlette")
    _require("prometheus_client")
    from .app import build_app as build

    return build(pipe, settings, **kwargs)


def serve(task: str, model: str | None = None, *, host: str = "127.0.0.1", port: int = 8000,
          max_batch_size: int = 32, max_wait_ms: float = 5.0, max_queue: int = 1024, max_body_mb: float = 16.0,
          workers: int | None = None, device=None, dtype="auto", log_level: str = "info", ready=None,
          **pipeline_kwargs) -> None:
    """Build `pipeline(task, model)` and serve it until SIGTERM/SIGINT; `ready(host, port)` is called once bound.

    `workers`: model threads running batches side by side (default: 2 on a CPU with 2+ threads, each then
    with half of torch's threads; 1 on an accelerator).
    """
    uvicorn = _require("uvicorn")
    import torch

    from .app import Settings

    pipe = pipeline(task, model=model, device=device, dtype=dtype, **pipeline_kwargs)
    on_cpu = torch.device(pipe.device).type == "cpu"
    if workers is None:
        workers = min(2, torch.get_num_threads()) if on_cpu else 1
    if on_cpu and workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
    settings = Settings(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                        max_body_mb=max_body_mb, workers=workers, model_name=str(model or ""))
    app = build_app(pipe, settings)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_keep_alive=5)
    server = _drain_server(uvicorn)(config)
    server.ready_callback = ready
    server.run()


def _drain_server(uvicorn):
    class DrainingServer(uvicorn.Server):
        """uvicorn's server, but a SIGTERM ends in a clean return (uvicorn re-raises the signal by default,
        so the process would die by it instead of exiting 0 after draining)."""

        ready_callback = None

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def _on_signal(self, sig, frame) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop waiting for the requests in flight
            self.should_exit = True

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started and self.ready_callback is not None:
                bound = self.servers[0].sockets[0].getsockname() if self.servers else (self.config.host, None)
                self.ready_callback(bound[0], bound[1])

    return DrainingServer
