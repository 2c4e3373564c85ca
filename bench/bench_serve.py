"""Serving benchmarks, bounded and on loopback only.

1. HTTP load: 32 concurrent clients x 16 single-sentence requests each to text-classification on the
   distilbert-base-shaped checkpoint, against `inferline serve` (dynamic batching) and against a plain
   FastAPI app that calls transformers' pipeline once per request (what people write by hand).
   Throughput, p50 / p99 latency, errors (non-200) and requests lost (no answer), and whether both
   servers gave the same labels.
2. Ray Data: `map_pipeline` over 10,000 rows against a plain loop calling the pipeline row by row (and
   against one batched call, `pipe(texts, batch_size=32)`), on the tests' tiny DistilBERT checkpoint.

    python bench/bench_serve.py              # both parts (several minutes on 2 cores)
    python bench/bench_serve.py --only http  # or: --only ray;  --rows N for the Ray part
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, sentences  # noqa: E402

CLIENTS, PER_CLIENT = 32, 16
REQUEST_TIMEOUT = 120.0  # seconds; a request without an answer by then counts as lost
BASELINE = '''
import os, torch, transformers
from fastapi import FastAPI
torch.set_num_threads({threads})
pipe = transformers.pipeline("text-classification", model=os.environ["BASELINE_MODEL"], device="cpu")
app = FastAPI()

@app.get("/health")
def health():
    return {{"status": "ok"}}

@app.post("/")
def predict(body: dict):
    return pipe(body["inputs"], **body.get("parameters", {{}}))
'''


def checkpoint() -> Path:
    from bench_encoders import build_checkpoint

    return build_checkpoint("distilbert", "sequence-classification")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(kind: str, model: Path, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false"}
    if kind == "inferline":
        command = [sys.executable, "-m", "inferline", "serve", "text-classification", "--model", str(model),
                   "--port", str(port), "--log-level", "warning"]
    else:  # the hand-written app: uvicorn + FastAPI, transformers' pipeline called once per request
        (RESULTS / "baseline_app.py").write_text(BASELINE.format(threads=threads))
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(RESULTS), "baseline_app:app", "--host",
                   "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        env["BASELINE_MODEL"] = str(model)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.3)
        if process.poll() is not None:
            raise RuntimeError(f"the {kind} server exited with {process.returncode}")
    process.kill()
    raise RuntimeError(f"the {kind} server did not start")


async def load(port: int, texts: list[str], first: int, per_client: int) -> dict:
    """CLIENTS concurrent clients, each sending `per_client` requests one after another (texts from `first`)."""
    import httpx

    latencies, errors, lost, labels = [], 0, 0, {}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=REQUEST_TIMEOUT,
                                 limits=limits) as client:

        async def one_client(c: int):
            nonlocal errors, lost
            for r in range(per_client):
                i = first + c * per_client + r
                start = time.perf_counter()
                try:
                    response = await client.post("/", json={"inputs": texts[i]})
                except httpx.HTTPError:
                    lost += 1
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1
                else:
                    labels[i] = response.json()[0]["label"]

        start = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(CLIENTS)))
        wall = time.perf_counter() - start
    return {"wall_s": wall, "latencies": latencies, "errors": errors, "lost": lost, "labels": labels}


def http_part(threads: int, rounds: int = 4) -> dict:
    """Both servers up at once; the load runs in `rounds` alternating between them, so that the load of a
    shared machine falls on both alike. Each client sends PER_CLIENT requests in all."""
    import httpx

    model = checkpoint()
    texts = sentences(CLIENTS * PER_CLIENT, seed=1, words=(6, 24))
    kinds = ("fastapi+transformers", "inferline")
    ports = {kind: free_port() for kind in kinds}
    processes = {}
    try:
        for kind in kinds:
            processes[kind] = start("inferline" if kind == "inferline" else "baseline", model, ports[kind], threads)
            for text in texts[:8]:  # warm-up
                httpx.post(f"http://127.0.0.1:{ports[kind]}/", json={"inputs": text}, timeout=REQUEST_TIMEOUT)
        parts = {kind: [] for kind in kinds}
        per_round = PER_CLIENT // rounds
        for r in range(rounds):
            for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                cpu = _cpu_seconds(processes[kind].pid)
                parts[kind].append(asyncio.run(load(ports[kind], texts, r * CLIENTS * per_round, per_round)))
                p = parts[kind][-1]
                p["cpu_s"] = _cpu_seconds(processes[kind].pid) - cpu
                print(f"  round {r + 1} {kind}: {len(p['latencies']) / p['wall_s']:.1f} req/s", file=sys.stderr)
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(60)
    results = {}
    for kind in kinds:
        latencies = sorted(x for p in parts[kind] for x in p["latencies"])
        wall = sum(p["wall_s"] for p in parts[kind])
        results[kind] = {"requests": CLIENTS * per_round * rounds, "wall_s": wall,
                         "throughput_rps": len(latencies) / wall, "p50_ms": 1000 * statistics.median(latencies),
                         "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
                         "errors": sum(p["errors"] for p in parts[kind]), "lost": sum(p["lost"] for p in parts[kind]),
                         "server_cpu_s": sum(p["cpu_s"] for p in parts[kind]),
                         "labels": {i: v for p in parts[kind] for i, v in p["labels"].items()}}
        r = results[kind]
        print(f"  {kind}: {r['throughput_rps']:.1f} req/s, p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, "
              f"errors {r['errors']}, lost {r['lost']} ({r['wall_s']:.1f} s; server CPU {r['server_cpu_s']:.1f} s)",
              file=sys.stderr)
    theirs, ours = results[kinds[0]].pop("labels"), results[kinds[1]].pop("labels")
    same = sum(ours.get(i) == label for i, label in theirs.items())
    return {**results, "same_labels": f"{same}/{len(theirs)}",
            "throughput_ratio": results["inferline"]["throughput_rps"] / results[kinds[0]]["throughput_rps"],
            "p99_ratio": results[kinds[0]]["p99_ms"] / results["inferline"]["p99_ms"],
            # requests per CPU-second of the server process: what a shared machine's load does not skew
            "cpu_efficiency_ratio": results[kinds[0]]["server_cpu_s"] / results["inferline"]["server_cpu_s"]}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def ray_part(rows: int, threads: int) -> dict:
    import ray
    import torch

    from inferline import pipeline
    from inferline.integrations.ray import map_pipeline

    # The tests' tiny DistilBERT: 10,000 rows of the base-sized one would take an hour row by row on 2 cores,
    # and a small model shows what Ray's own overhead costs.
    from _common import fixtures

    model = fixtures().build("distilbert", "sequence-classification")
    texts = sentences(rows, seed=2, words=(6, 24))
    torch.set_num_threads(threads)
    pipe = pipeline("text-classification", model=str(model), device="cpu")
    pipe(texts[:32], batch_size=32)
    start = time.perf_counter()
    looped = [pipe(t)[0] for t in texts]
    loop_s = time.perf_counter() - start
    print(f"  plain loop, row by row: {rows / loop_s:.1f} rows/s ({loop_s:.1f} s)", file=sys.stderr)
    start = time.perf_counter()
    batched = pipe(texts, batch_size=32)
    batched_s = time.perf_counter() - start
    print(f"  one batched call: {rows / batched_s:.1f} rows/s ({batched_s:.1f} s)", file=sys.stderr)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
                                       "HF_HUB_OFFLINE": "1"}})
    try:
        ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)],
                                 override_num_blocks=os.cpu_count() * 4)
        start = time.perf_counter()
        out = map_pipeline(ds, "text-classification", str(model), input_column="text", batch_size=32,
                           concurrency=os.cpu_count(), num_cpus=1).take_all()
        ray_s = time.perf_counter() - start  # includes the actors' start-up and model loads
    finally:
        ray.shutdown()
    out.sort(key=lambda r: r["id"])
    same = sum(r["output"]["label"] == e["label"] for r, e in zip(out, looped))
    print(f"  ray map_pipeline ({os.cpu_count()} actors x 1 thread): {rows / ray_s:.1f} rows/s ({ray_s:.1f} s, "
          f"start-up included)", file=sys.stderr)
    return {"rows": rows, "loop_rows_per_s": rows / loop_s, "batched_rows_per_s": rows / batched_s,
            "ray_rows_per_s": rows / ray_s, "ray_vs_loop": loop_s / ray_s, "ray_vs_batched": batched_s / ray_s,
            "same_labels": f"{same}/{rows}", "batched_same": sum(a["label"] == b["label"]
                                                                  for a, b in zip(batched, looped))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("http", "ray"))
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"load_avg_1m_at_start": round(os.getloadavg()[0], 2)}
    if args.only in (None, "http"):
        print(f"HTTP: {CLIENTS} clients x {PER_CLIENT} requests", file=sys.stderr)
        report["http"] = http_part(args.threads)
    if args.only in (None, "ray"):
        print(f"Ray Data: {args.rows} rows", file=sys.stderr)
        report["ray"] = ray_part(args.rows, args.threads)
    report["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    (RESULTS / "bench_serve.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
