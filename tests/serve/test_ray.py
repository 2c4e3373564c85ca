"""inferline.integrations.ray on a local Ray (2 CPUs, one start for the module): map_pipeline over a small
Ray Data dataset == transformers row for row, and the Ray Serve deployment's routes and batching."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from fixtures.server import SRC, free_port
from parity.compare import assert_same

ray = pytest.importorskip("ray")

TEXTS = [f"{word} sentence number {i}" for i, word in enumerate(["good", "bad", "fine", "awful"] * 6)]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
                                       "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model(checkpoint):
    return checkpoint("distilbert", "sequence-classification")


@pytest.fixture(scope="module")
def oracle(model):
    import transformers

    return transformers.pipeline("text-classification", model=str(model), device="cpu")


def test_map_pipeline_equals_transformers_row_for_row(cluster, model, oracle):
    from inferline.integrations.ray import map_pipeline

    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(TEXTS)], override_num_blocks=2)
    rows = sorted(map_pipeline(ds, "text-classification", str(model), input_column="text", output_column="label",
                               batch_size=8).take_all(), key=lambda r: r["id"])
    assert [r["text"] for r in rows] == TEXTS
    assert_same([r["label"] for r in rows], [oracle(t)[0] for t in TEXTS])
    with pytest.raises(ValueError, match="'sentence'"):
        map_pipeline(ds, "text-classification", str(model), input_column="sentence")


def test_serve_deployment_routes_and_batching(cluster, model, oracle):
    from ray import serve

    from inferline.integrations.ray import deployment

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(deployment("text-classification", str(model), max_batch_size=8, max_wait_ms=100), name="cls",
                  route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            assert client.get("/health").json() == {"status": "ok"}
            assert_same(client.post("/", json={"inputs": TEXTS[0]}).json(), oracle(TEXTS[0]))
            with ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(lambda t: client.post("/", json={"inputs": t}), TEXTS[:8]))
            assert_same([r.json() for r in responses], [oracle(t) for t in TEXTS[:8]])
            metrics = {line.split(" ")[0]: float(line.split(" ")[1]) for line in client.get("/metrics").text.splitlines()
                       if line.startswith("inferline_batch_size_")}
            assert metrics["inferline_batch_size_sum"] == 9
            assert metrics["inferline_batch_size_count"] < 9  # the 8 concurrent requests shared model calls
            bad = client.post("/", json={"inputs": "x", "parameters": {"foo": 1}})
            assert bad.status_code == 422 and "foo" in bad.json()["error"]
    finally:
        serve.shutdown()
