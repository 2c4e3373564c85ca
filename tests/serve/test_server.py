"""`inferline serve` as a real subprocess on loopback: the Inference-API route, batching, errors, metrics,
queue limits, disconnects and the SIGTERM drain (text-classification on a tiny DistilBERT)."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from fixtures.server import Server
from parity.compare import assert_same

TEXTS = ["I love this movie!", "The weather today is terrible and I will stay home all day long.", "Paris",
         "Hugging Face is a company based in New York City.", "meh", "What a wonderful, wonderful day it was.",
         "No.", "The plot was thin, the actors were bored, and the ending made no sense at all."]


@pytest.fixture(scope="module")
def model(checkpoint):
    return checkpoint("distilbert", "sequence-classification")


@pytest.fixture(scope="module")
def server(model):
    # A wide batching window so that requests sent together surely meet in one batch.
    server = Server("text-classification", model, "--max-batch-size", "8", "--max-wait-ms", "200", "--workers", "2",
                    "--max-body-mb", "0.01")
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def oracle(model):
    """transformers' pipeline on the same checkpoint."""
    import transformers

    return transformers.pipeline("text-classification", model=str(model), device="cpu")


def test_predict_equals_transformers(server, oracle):
    for path in ("/", "/predict"):
        response = server.post(path, json={"inputs": TEXTS[0]})
        assert response.status_code == 200, response.text
        assert_same(response.json(), oracle(TEXTS[0]))
    response = server.post("/", json={"inputs": TEXTS[:3], "parameters": {"top_k": 2}})
    assert_same(response.json(), oracle(TEXTS[:3], top_k=2))
    pair = {"text": "I love it", "text_pair": "It is great"}
    assert_same(server.post("/", json={"inputs": pair}).json(), oracle(pair))
    # curl -d sends a form content type: still JSON
    response = server.post("/", content=json.dumps({"inputs": "meh"}),
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert_same(response.json(), oracle("meh"))


def test_concurrent_requests_are_batched_and_equal_unbatched(server):
    alone = [server.post("/", json={"inputs": t}).json() for t in TEXTS]  # one at a time: batches of one
    batches_before = server.metric("inferline_batch_size_count")
    rows_before = server.metric("inferline_batch_size_sum")
    with ThreadPoolExecutor(len(TEXTS)) as pool:
        together = list(pool.map(lambda t: server.post("/", json={"inputs": t}), TEXTS))
    assert [r.status_code for r in together] == [200] * len(TEXTS)
    for ours, single in zip(together, alone):
        assert_same(ours.json(), single, atol=1e-5)
    batches = server.metric("inferline_batch_size_count") - batches_before
    rows = server.metric("inferline_batch_size_sum") - rows_before
    assert rows == len(TEXTS)
    assert batches < len(TEXTS), f"{len(TEXTS)} concurrent requests ran in {batches} model calls"
    # Requests with their own lists and with different parameters never mix their results up.
    bodies = [{"inputs": TEXTS[:3]}, {"inputs": TEXTS[3], "parameters": {"top_k": 1}},
              {"inputs": TEXTS[4:], "parameters": {"function_to_apply": "sigmoid"}}, {"inputs": TEXTS[1]}]
    alone = [server.post("/", json=body).json() for body in bodies]
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(lambda body: server.post("/", json=body).json(), bodies))
    assert_same(together, alone, atol=1e-5)
    assert len(together[2]) == len(TEXTS[4:])


@pytest.mark.parametrize("body, status, field, words", [
    (b'{"inputs": ', 422, "body", "not valid JSON"),
    (b'["a list"]', 422, "body", "JSON object"),
    (b'{"parameters": {}}', 422, "inputs", "inputs"),
    (b'{"inputs": "x", "extra": 1}', 422, "extra", "extra"),
    (b'{"inputs": "x", "parameters": [1]}', 422, "parameters", "parameters"),
    (b'{"inputs": "x", "parameters": {"foo": 1}}', 422, None, "foo"),
    (b'{"inputs": "x", "parameters": {"top_k": "two"}}', 422, None, "top_k"),
    (b'{"inputs": "x", "parameters": {"batch_size": 4}}', 422, "parameters.batch_size", "batch_size"),
    (b'{"inputs": ""}', 422, None, "empty"),
    (b'{"inputs": 17}', 422, None, "int"),
    (b'{"inputs": []}', 422, None, "empty"),
])
def test_bad_requests_are_422_naming_the_problem(server, body, status, field, words):
    response = server.post("/", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()
    assert words in error["error"]
    assert error.get("field") == field
    assert "Traceback" not in response.text


def test_a_raw_body_is_the_input(server):
    """A non-JSON body (an image, audio file) goes to the pipeline as bytes; a text task says it wants text."""
    response = server.post("/", content=b"\x89PNG\r\n", headers={"content-type": "image/png"})
    assert response.status_code == 422 and "bytes" in response.json()["error"]
    response = server.post("/", content=b"", headers={"content-type": "audio/wav"})
    assert response.status_code == 422 and response.json()["field"] == "body"


def test_body_over_the_limit_is_413(server):
    big = {"inputs": "word " * 3000}  # ~15 KB > --max-body-mb 0.01
    assert server.post("/", json=big).status_code == 413

    def chunks():  # no content-length: counted while reading
        for _ in range(20):
            yield b" " * 1024

    response = server.post("/", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_health_info_metrics_and_404(server, model):
    assert server.get("/health").json() == {"status": "ok"}
    info = server.get("/info").json()
    assert info["task"] == "text-classification" and info["model"] == str(model)
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["parameters"]["max_batch_size"] == 8 and info["parameters"]["max_wait_ms"] == 200
    response = server.post("/v1/embeddings", json={"input": "x"})
    assert response.status_code == 404 and "feature-extraction" in response.json()["error"]
    server.post("/", json={"inputs": "x", "parameters": {"foo": 1}})
    metrics = server.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in ("inferline_requests_total", "inferline_request_duration_seconds_bucket",
                 "inferline_batch_size_bucket", "inferline_queue_depth"):
        assert name in text
    assert server.metric("inferline_requests_total", route="/", status="422") >= 1
    assert server.metric("inferline_requests_total", route="/health", status="200") >= 1
    assert server.metric("inferline_request_duration_seconds_count", route="/") >= 1
    assert server.metric("inferline_queue_depth") == 0


# ----- queue limit, disconnects, drain: a server whose batches wait 1.5 s to fill -----
SLOW = ("--max-batch-size", "64", "--max-wait-ms", "1500", "--max-queue", "2")


@pytest.fixture(scope="module")
def slow_server(model):
    server = Server("text-classification", model, *SLOW)
    yield server
    assert server.stop() == 0


def _raw_request(server, body: dict) -> socket.socket:
    """Send a request on a raw socket and leave it waiting (the test closes it)."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    return sock


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_queue_full_is_429_with_retry_after(slow_server):
    with ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(slow_server.post, "/", json={"inputs": t}) for t in TEXTS[:2]]
        assert _wait_for(lambda: slow_server.metric("inferline_queue_depth") == 2)
        refused = slow_server.post("/", json={"inputs": "one too many"})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "max-queue" in refused.json()["error"]
        assert [w.result().status_code for w in waiting] == [200, 200]
    assert slow_server.post("/", json={"inputs": "now there is room"}).status_code == 200


def test_a_disconnecting_client_frees_its_slot(slow_server):
    gone_before = slow_server.metric("inferline_requests_total", route="/", status="499")
    socks = [_raw_request(slow_server, {"inputs": t}) for t in TEXTS[:2]]
    assert _wait_for(lambda: slow_server.metric("inferline_queue_depth") == 2)
    started = time.monotonic()
    for sock in socks:
        sock.close()
    assert _wait_for(lambda: slow_server.metric("inferline_queue_depth") == 0, timeout=1.0)
    assert time.monotonic() - started < 1.4, "the slots were freed by the batch running, not by the disconnect"
    assert slow_server.metric("inferline_requests_total", route="/", status="499") - gone_before == 2
    assert slow_server.post("/", json={"inputs": "after the disconnects"}).status_code == 200


def test_sigterm_finishes_requests_in_flight_and_exits_0(slow_server):
    """Last in this file: it ends the module's slow server."""
    server = slow_server
    try:
        with ThreadPoolExecutor(2) as pool:
            in_flight = [pool.submit(server.post, "/", json={"inputs": t}) for t in TEXTS[:2]]
            assert _wait_for(lambda: server.metric("inferline_queue_depth") == 2)
            server.terminate()
            time.sleep(0.3)
            with pytest.raises(httpx.TransportError):  # it no longer accepts connections
                httpx.post(server.url + "/", json={"inputs": "late"}, timeout=5)
            responses = [f.result(timeout=30) for f in in_flight]
        assert [r.status_code for r in responses] == [200, 200]
        assert all(r.json()[0]["label"] for r in responses)
        assert server.process.wait(30) == 0
    finally:
        server.stop()
