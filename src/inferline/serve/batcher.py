"""The dynamic batcher: model calls of concurrent requests merged into one batch.

Each request runs the ordinary `pipe(inputs, **parameters)` in its own thread, so its response has
exactly the structure and values the pipeline gives that request alone. The batcher stands in for the
pipeline's `_forward_window` (a window of unbatched pieces in, one output per piece out): pieces of
requests whose forward parameters are equal wait in one queue, and a single worker thread runs them
together — up to `max_batch_size` rows, waiting at most `max_wait_ms` for the batch to fill — through
the pipeline's own `_forward_window`, grouped by length (one model call per group, padded to its longest,
with padding kept within PAD_SLACK of the real tokens).
Batched results equal unbatched ones (the pipelines' contract), so merging changes no response.

Requests with a `seed` run alone, after seeding torch's generator, so they are reproducible; so do
requests whose forward parameters differ from every other's (a streamer, for instance).
`workers` model threads run batches side by side (on a CPU, two single-threaded workers keep both cores
busy without the barrier stalls of one two-threaded op stream on a busy machine).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """More requests are waiting than `max_queue` allows (the server answers 429)."""


class Cancelled(Exception):
    """The request's client went away; its queued work was dropped."""


@dataclass(eq=False)
class Ticket:
    """One admitted request: its seed, and whether its client is gone."""

    seed: int | None = None
    cancelled: bool = False
    waiting: bool = True  # counted in the queue depth (admitted, not on the model right now)


@dataclass(eq=False)
class _Job:
    key: Any
    pieces: list
    fwd: dict
    ticket: Ticket
    arrival: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: list | None = None
    error: BaseException | None = None


class Batcher:
    """Merges the model calls of a pipeline's concurrent callers; see the module docstring.

    >>> batcher = Batcher(pipe, max_batch_size=32, max_wait_ms=5, max_queue=1024)
    >>> ticket = batcher.admit()                        # QueueFull when too many are waiting
    >>> batcher.run(ticket, lambda: pipe("some text"))  # in a request thread; Cancelled if cancel(ticket)
    """

    def __init__(self, pipe, max_batch_size: int = 32, max_wait_ms: float = 5.0, max_queue: int = 1024,
                 workers: int = 1, on_batch: Callable[[int], None] | None = None, on_depth: Callable[[int], None] | None = None):
        for name, value in (("max_batch_size", max_batch_size), ("max_queue", max_queue)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"`workers` must be a positive integer; got {workers!r}.")
        if max_wait_ms < 0:
            raise ValueError(f"`max_wait_ms` must be >= 0; got {max_wait_ms!r}.")
        self.pipe = pipe
        self.max_batch_size, self.max_wait, self.max_queue = max_batch_size, max_wait_ms / 1000, max_queue
        self.workers = workers
        self._running = 0  # batches on the model now; a seeded batch runs with no other (torch's RNG is global)
        self._exclusive = False
        self._on_batch, self._on_depth = on_batch or (lambda n: None), on_depth or (lambda n: None)
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._waiting = 0
        self._closed = False
        self._local = threading.local()
        self._window = pipe._forward_window  # the pipeline's own, bound
        self._forward = pipe.forward
        pipe._forward_window = self._submit  # instance attributes: this pipeline only
        pipe.forward = self._observed_forward
        self._start()

    def _start(self) -> None:
        self._threads = [threading.Thread(target=self._loop, name=f"inferline-batcher-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()

    # ----- requests -----
    def admit(self, seed: int | None = None) -> Ticket:
        """A ticket for a new request, or QueueFull when `max_queue` requests are already waiting."""
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if self._waiting >= self.max_queue:
                raise QueueFull(f"{self._waiting} requests are waiting (--max-queue {self.max_queue})")
            self._set_waiting(+1)
            return Ticket(seed=seed)

    def run(self, ticket: Ticket, call: Callable[[], Any]) -> Any:
        """Run `call` (which calls the pipeline) in this thread on behalf of `ticket`; releases its slot."""
        self._local.ticket = ticket
        try:
            if ticket.cancelled:
                raise Cancelled()
            return call()
        finally:
            self._local.ticket = None
            with self._cond:
                if ticket.waiting:
                    ticket.waiting = False
                    self._set_waiting(-1)

    def cancel(self, ticket: Ticket) -> None:
        """The client is gone: drop its queued work (its thread then raises Cancelled)."""
        with self._cond:
            ticket.cancelled = True
            for job in [j for j in self._queue if j.ticket is ticket]:
                self._queue.remove(job)
                job.error = Cancelled()
                job.done.set()
            self._cond.notify_all()

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish what is queued, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    @property
    def waiting(self) -> int:
        return self._waiting

    # ----- the pipeline side -----
    def _submit(self, pieces: list[dict], batch_size: int, fwd: dict) -> list[dict]:
        ticket = getattr(self._local, "ticket", None)
        if ticket is None:  # a caller outside the server (or the worker itself): run directly
            return self._window(pieces, batch_size, fwd)
        key = _key(fwd)
        if ticket.seed is not None:
            key = (key, id(ticket))  # never merged: the seed fixes this request's draws alone
        job = _Job(key, pieces, fwd, ticket)
        if ticket.cancelled:
            raise Cancelled()
        self._enqueue(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _enqueue(self, job: _Job) -> None:
        with self._cond:
            self._queue.append(job)
            self._cond.notify_all()

    def _observed_forward(self, model_inputs: dict, **forward_params):
        rows = next((v.shape[0] for v in model_inputs.values() if isinstance(v, torch.Tensor) and v.dim()), 1)
        self._on_batch(int(rows))
        return self._forward(model_inputs, **forward_params)

    # ----- the worker -----
    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._execute(batch)
            finally:
                with self._cond:
                    self._running -= 1
                    self._exclusive = False if batch[0].ticket.seed is not None else self._exclusive
                    self._cond.notify_all()

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while True:
                while not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                first = self._queue[0]
                deadline = first.arrival + self.max_wait
                while first in self._queue and not self._closed:
                    rows = sum(len(j.pieces) for j in self._queue if j.key == first.key)
                    left = deadline - time.monotonic()
                    if rows >= self.max_batch_size or left <= 0:
                        break
                    self._cond.wait(left)
                if first not in self._queue:  # cancelled while we waited
                    continue
                if self._exclusive or (first.ticket.seed is not None and self._running):
                    self._cond.wait()  # a seeded batch runs alone: torch's generator is shared by all threads
                    continue
                batch, rows = [], 0
                for job in list(self._queue):
                    if job.key == first.key and (not batch or rows + len(job.pieces) <= self.max_batch_size):
                        batch.append(job)
                        rows += len(job.pieces)
                for job in batch:
                    self._queue.remove(job)
                    if job.ticket.waiting:
                        job.ticket.waiting = False
                        self._set_waiting(-1)
                self._running += 1
                self._exclusive = first.ticket.seed is not None
                return batch

    def _execute(self, batch: list[_Job]) -> None:
        """Run jobs of one key as one window; each gets its own outputs (or error), and is woken."""
        cancelled = [job for job in batch if job.ticket.cancelled]
        for job in cancelled:
            job.error = Cancelled()
            job.done.set()
        batch = [job for job in batch if not job.ticket.cancelled]
        if not batch:
            return
        try:
            if batch[0].ticket.seed is not None:
                torch.manual_seed(batch[0].ticket.seed)
            outputs = self._run_grouped([p for job in batch for p in job.pieces], batch[0].fwd)
            start = 0
            for job in batch:
                job.result, start = outputs[start: start + len(job.pieces)], start + len(job.pieces)
        except BaseException as error:  # noqa: BLE001 - handed to the request threads
            if len(batch) > 1:  # one request's bad piece must not fail its neighbours: run each alone
                for job in batch:
                    self._execute([job])
                return
            batch[0].error = error
        for job in batch:
            with self._cond:
                if not job.ticket.waiting and not job.ticket.cancelled:
                    job.ticket.waiting = True  # it may need the model again (another window)
                    self._set_waiting(+1)
            job.done.set()

    def _run_grouped(self, pieces: list[dict], fwd: dict) -> list[dict]:
        """Run pieces grouped by length: one model call per group, each padded little (see `length_groups`)."""
        outputs: list = [None] * len(pieces)
        for group in length_groups([_length(p) for p in pieces]):
            for i, out in zip(group, self._window([pieces[i] for i in group], len(group), fwd)):
                outputs[i] = out
        return outputs

    def _set_waiting(self, delta: int) -> None:
        self._waiting += delta
        self._on_depth(self._waiting)


PAD_SLACK = 1.25  # a length group's padded tokens stay within 125% of its real tokens...
MIN_GROUP = 4  # ...unless that would leave groups this small


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Indices grouped by length, longest first: a group grows while padding all of it to its longest stays
    within PAD_SLACK of its real tokens (or it has fewer than MIN_GROUP members)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        if group is not None and (len(group) < MIN_GROUP or lengths[group[0]] * (len(group) + 1) <=
                                  PAD_SLACK * (sum(lengths[j] for j in group) + lengths[i])):
            group.append(i)
        else:
            groups.append([i])
    return groups


def _length(piece: dict) -> int:
    ids = piece.get("input_ids")
    return int(ids.shape[-1]) if isinstance(ids, torch.Tensor) and ids.dim() else 0


def _key(fwd: dict) -> str:
    """Forward parameters → a key: only calls with equal parameters can share a batch."""
    return repr(sorted(fwd.items(), key=lambda kv: kv[0]))
