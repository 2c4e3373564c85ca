"""Prometheus metrics of one server: requests by route and status, latency, batch sizes, queue depth."""

from __future__ import annotations

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The server's metrics in their own registry (several servers may live in one process, e.g. tests)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("inferline_requests", "HTTP requests by route and status code",
                                ("route", "status"), registry=self.registry)
        self.latency = Histogram("inferline_request_duration_seconds", "Request latency by route", ("route",),
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("inferline_batch_size", "Rows per model call of the dynamic batcher",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("inferline_queue_depth", "Requests admitted and waiting for the model",
                                 registry=self.registry)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
