"""``ladder bench gateway``: the gateway's added latency and concurrent throughput against an instant stub."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import yaml

from ladder.encoder import OnnxEncoder
from ladder.pool import PoolConfig
from ladder.router import Router
from ladder.scoring import EmbeddedScorer
from service.loadgen import concurrent, sequential
from service.settings import Settings, available_cpus

T = TypeVar("T")
HOST = "127.0.0.1"
# about 40 tokens for multilingual-e5-small, prefix and special tokens included
PROMPT = (
    "A train leaves at 3 pm at 80 km/h; a second one leaves the same station at 4 pm at 100 km/h. "
    "When does the second train catch up with the first?"
)
START_TIMEOUT_S = 60.0


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop when it is installed (half the client CPU of asyncio's loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stub_pool(pool: PoolConfig, stub_url: str) -> dict[str, Any]:
    """The pool with every upstream pointed at the stub (no keys needed)."""
    data = pool.model_dump(mode="json")
    for model in data["models"]:
        model["upstream"] = {"base_url": f"{stub_url}/v1", "model": model["upstream"]["model"]}
    return data


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code in (200, 405):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


@contextmanager
def processes(pool: PoolConfig, scorer_threads: int | None) -> Iterator[tuple[int, int]]:
    """The stub and the gateway as subprocesses on loopback: yields (stub port, gateway port)."""
    stub_port, gateway_port = free_port(), free_port()
    children: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as scratch:
        pool_path = Path(scratch) / "pool.yaml"
        pool_path.write_text(yaml.safe_dump(stub_pool(pool, f"http://{HOST}:{stub_port}")), encoding="utf-8")
        env = {
            **os.environ,
            "LADDER_POOL": str(pool_path),
            "LADDER_HOST": HOST,
            "LADDER_PORT": str(gateway_port),
            "LADDER_AUTH_DISABLED": "true",
            "LADDER_LOG_LEVEL": "warning",
            "LADDER_RETRIES": "0",
        }
        env.pop("LADDER_CONFIG", None)
        if scorer_threads is not None:
            env["LADDER_SCORER_THREADS"] = str(scorer_threads)
        try:
            stub = subprocess.Popen([sys.executable, "-m", "service.stub", "--port", str(stub_port)])
            children.append(stub)
            gateway = subprocess.Popen([sys.executable, "-m", "service"], env=env)
            children.append(gateway)
            _wait_ready(f"http://{HOST}:{stub_port}/", stub)
            _wait_ready(f"http://{HOST}:{gateway_port}/readyz", gateway)
            yield stub_port, gateway_port
        finally:
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()


def _p50(values: list[float] | np.ndarray) -> float:
    return round(float(np.percentile(values, 50)), 3)


def _sequential_rps(encoder: OnnxEncoder, ids: np.ndarray, mask: np.ndarray, repeats: int) -> float:
    encoder.embed_ids(ids, mask)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.embed_ids(ids, mask)
        timings.append(time.perf_counter() - started)
    return len(ids) / float(np.median(timings))


def _parallel_rps(
    encoder: OnnxEncoder, ids: np.ndarray, mask: np.ndarray, repeats: int, workers: int
) -> float:
    def run() -> None:
        for _ in range(repeats):
            encoder.embed_ids(ids, mask)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: encoder.embed_ids(ids, mask), range(workers)))
        started = time.perf_counter()
        for future in [pool.submit(run) for _ in range(workers)]:
            future.result()
        return workers * repeats * len(ids) / (time.perf_counter() - started)


def encoder_batched_rps(
    router: Router, batch_sizes: tuple[int, ...] = (8, 16, 32, 64), repeats: int = 5
) -> float:
    """The bare encoder's best throughput on copies of the prompt: the machine's limit for scoring.

    The best over batch sizes and over three ways to use the cores: one call at a time with ONNX Runtime's
    default threads, one at a time with one thread, and one single-threaded call per CPU in parallel.
    """
    scorer = router.scorer
    if not isinstance(scorer, EmbeddedScorer):
        raise TypeError("bench gateway measures the embedded scorer")
    encoded = router.tokenizer.encode([PROMPT])
    workers = available_cpus()
    best = 0.0
    for threads in (None, 1):
        encoder = OnnxEncoder(scorer.encoder.directory, scorer.encoder.variant, threads=threads)
        for size in batch_sizes:
            ids = np.repeat(encoded.input_ids, size, axis=0)
            mask = np.repeat(encoded.attention_mask, size, axis=0)
            best = max(best, _sequential_rps(encoder, ids, mask, repeats))
            if threads == 1 and workers > 1:
                best = max(best, _parallel_rps(encoder, ids, mask, max(2, repeats // 2), workers))
    return round(best, 1)


def decision_p50_ms(router: Router, repeats: int = 200) -> float:
    for _ in range(10):
        router.route(PROMPT)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        router.route(PROMPT)
        samples.append((time.perf_counter() - started) * 1000)
    return _p50(samples)


def batch_totals(metrics_url: str) -> tuple[float, float]:
    """(prompts scored, scorer calls) so far, from the gateway's Prometheus histogram."""
    values = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(metrics_url, timeout=5).text.splitlines():
        for key in values:
            if line.startswith(f"ladder_scoring_batch_size_{key} "):
                values[key] = float(line.split()[1])
    return values["sum"], values["count"]


def bench_gateway(
    pool: PoolConfig,
    clients: int = 32,
    requests: int = 5000,
    single_requests: int = 300,
    scorer_threads: int | None = None,
    decision_repeats: int = 200,
    encoder_batches: tuple[int, ...] = (8, 16, 32, 64),
) -> dict[str, Any]:
    """Run both measurements and return the JSON-ready report."""
    if scorer_threads is None:
        scorer_threads = Settings.model_fields["scorer_threads"].default
    router = Router.from_pool(pool, threads=scorer_threads)  # the gateway's configuration, in-process
    body = json.dumps({"model": "ladder", "messages": [{"role": "user", "content": PROMPT}]}).encode()
    path = "/v1/chat/completions"
    with processes(pool, scorer_threads) as (stub_port, gateway_port):
        decision = decision_p50_ms(router, decision_repeats)
        encoder_rps = encoder_batched_rps(router, encoder_batches)
        direct = run_async(sequential(HOST, stub_port, path, body, single_requests))
        through = run_async(sequential(HOST, gateway_port, path, body, single_requests))
        metrics_url = f"http://{HOST}:{gateway_port}/metrics"
        before = batch_totals(metrics_url)
        load = run_async(concurrent(HOST, gateway_port, path, body, clients, requests))
        after = batch_totals(metrics_url)
    return {
        "single_client": {
            "added_p50_ms": round(_p50(through) - _p50(direct), 3),
            "decision_p50_ms": decision,
            "gateway_round_trip_p50_ms": _p50(through),
            "stub_round_trip_p50_ms": _p50(direct),
        },
        "concurrent": {
            "clients": clients,
            "requests": load.requests,
            "errors": load.errors,
            "throughput_rps": round(load.requests / load.seconds, 1),
            "encoder_batched_throughput_rps": encoder_rps,
            "seconds": round(load.seconds, 2),
            "mean_scoring_batch": round((after[0] - before[0]) / max(1.0, after[1] - before[1]), 2),
        },
        "prompt_tokens": int(router.tokenizer.encode([PROMPT]).lengths[0]),
    }
