"""Ray: a pipeline over a Ray Data dataset, and `inferline serve` as a Ray Serve application
(`pip install "inferline[ray]"`).

>>> import ray
>>> from inferline.integrations.ray import map_pipeline, deployment
>>> ds = ray.data.from_items([{"text": "I love it"}, {"text": "I hate it"}])
>>> map_pipeline(ds, "text-classification", "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
...              input_column="text").take_all()
[{'text': 'I love it', 'output': {'label': 'POSITIVE', 'score': 0.99...}}, ...]
>>> from ray import serve
>>> serve.run(deployment("text-classification", "distilbert/...", num_replicas=2))  # same routes as `inferline serve`
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..serve.batcher import Batcher, _Job

_EXTRA = 'Ray support needs the ray extra: pip install "inferline[ray]"'


def _ray(module: str = "ray"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{_EXTRA} ({error}).") from error


# ----- Ray Data -----
def map_pipeline(ds, task: str, model: str | None = None, *, input_column: str, output_column: str = "output",
                 batch_size: int = 32, concurrency: int = 1, num_cpus: float | None = None,
                 num_gpus: float | None = None, **pipeline_kwargs):
    """`ds` with `output_column` = `pipeline(task, model)(row[input_column])` for every row.

    `map_batches` with a callable class, so each of the `concurrency` actors builds the pipeline once.
    Inputs may be anything the pipeline takes (text, an image or audio path, bytes). Results equal the
    plain pipeline's, row for row (batched == unbatched).
    """
    _ray()
    if not isinstance(input_column, str) or not input_column:
        raise ValueError(f"`input_column` must name a column of the dataset; got {input_column!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    columns = ds.columns(fetch_if_missing=False) if hasattr(ds, "columns") else None
    if columns is not None and input_column not in columns:
        raise ValueError(f"`input_column` {input_column!r} is not a column of the dataset; columns: {columns}.")

    class PipelineActor:
        def __init__(self):
            from .. import pipeline

            self.pipe = pipeline(task, model=model, **pipeline_kwargs)

        def __call__(self, batch: dict) -> dict:
            if input_column not in batch:
                raise ValueError(f"`input_column` {input_column!r} is not a column of the dataset; columns: "
                                 f"{sorted(batch)}.")
            inputs = [_plain(x) for x in batch[input_column]]
            outputs = self.pipe(inputs, batch_size=batch_size)
            return {**batch, output_column: outputs}

    resources = {k: v for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus)) if v is not None}
    return ds.map_batches(PipelineActor, batch_size=batch_size, concurrency=concurrency, batch_format="numpy",
                          **resources)


def _plain(value: Any) -> Any:
    """A numpy cell of a Ray Data batch → the Python value the pipeline expects."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ----- Ray Serve -----
class ServeBatcher(Batcher):
    """The batcher with Ray Serve's `@serve.batch` as its queue: jobs from concurrent requests arrive
    together (up to `max_batch_size` rows, waiting at most `max_wait_ms`) and run grouped by parameters."""

    def _start(self) -> None:
        serve = _ray("ray.serve")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="inferline-model")
        self._batched = serve.batch(max_batch_size=self.max_batch_size, batch_wait_timeout_s=self.max_wait,
                                    batch_size_fn=lambda jobs: sum(len(j.pieces) for j in jobs))(self._run_jobs)

    def admit(self, seed=None):
        if self._loop is None:
            self._loop = asyncio.get_running_loop()  # the replica's loop: serve.batch lives there
        return super().admit(seed)

    def _enqueue(self, job: _Job) -> None:
        future = asyncio.run_coroutine_threadsafe(self._batched(job), self._loop)
        future.add_done_callback(lambda f: self._fail(job, f))

    @staticmethod
    def _fail(job: _Job, future) -> None:
        """serve.batch itself failed (or was cancelled): wake the request thread with the error."""
        error = RuntimeError("the batch was cancelled") if future.cancelled() else future.exception()
        if error is not None and not job.done.is_set():
            job.error = error
            job.done.set()

    async def _run_jobs(self, jobs: list[_Job]) -> list[None]:
        with self._cond:
            for job in jobs:
                if job.ticket.waiting:
                    job.ticket.waiting = False
                    self._set_waiting(-1)
        groups: dict[Any, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        loop = asyncio.get_running_loop()
        for group in groups.values():
            await loop.run_in_executor(self._model_thread, self._execute, group)
        return [None] * len(jobs)

    def close(self, timeout: float | None = 10.0) -> None:
        self._closed = True
        self._model_thread.shutdown(wait=True)


def deployment(task: str, model: str | None = None, *, max_batch_size: int = 32, max_wait_ms: float = 5.0,
               max_queue: int = 1024, max_body_mb: float = 16.0, num_replicas: int | str = 1,
               ray_actor_options: dict | None = None, name: str = "inferline", **pipeline_kwargs):
    """A Ray Serve application with the routes and dynamic batching of `inferline serve` (Serve's own
    `@serve.batch` underneath); each of `num_replicas` replicas loads the model once.

    >>> serve.run(deployment("feature-extraction", "sentence-transformers/all-MiniLM-L6-v2"))
    """
    serve = _ray("ray.serve")

    def build_asgi_app():
        from .. import pipeline
        from ..serve import build_app
        from ..serve.app import Engine, Settings
        from ..serve.metrics import Metrics

        settings = Settings(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                            max_body_mb=max_body_mb, model_name=str(model or ""))
        pipe = pipeline(task, model=model, **pipeline_kwargs)
        metrics = Metrics()
        engine = Engine(pipe, settings, metrics, batcher_class=ServeBatcher)
        return build_app(pipe, settings, engine=engine, metrics=metrics)

    ingress = serve.ingress(build_asgi_app)(type("InferlineDeployment", (), {}))
    options = {"name": name, "num_replicas": num_replicas}
    if ray_actor_options is not None:
        options["ray_actor_options"] = ray_actor_options
    return serve.deployment(ingress, **options).bind()
