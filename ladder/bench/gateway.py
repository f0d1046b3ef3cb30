"""``ladder bench gateway``: added latency, closed-loop throughput, open-loop p99 (instant stub)."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import os
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

from ladder.bench.loadgen import LoadResult, closed_loop, open_loop, sequential
from ladder.core.encoder import OnnxEncoder
from ladder.core.loopback import free_port
from ladder.core.pool import PoolConfig
from ladder.core.router import Router
from ladder.core.scoring import EmbeddedScorer
from ladder.gateway.settings import Settings, available_cpus

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
            stub = subprocess.Popen([sys.executable, "-m", "ladder.bench.stub", "--port", str(stub_port)])
            children.append(stub)
            gateway = subprocess.Popen([sys.executable, "-m", "ladder.gateway"], env=env)
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

    The best over batch sizes, over three ways to use the cores (one call at a time with ONNX Runtime's
    default threads, one at a time with one thread, one single-threaded call per CPU in parallel), and over
    running each row alone or the whole batch at once (the gateway's encoder batches unless its int8 graph
    is a per-tensor one built before per-token graphs, which runs rows alone).
    """
    scorer = router.scorer
    if not isinstance(scorer, EmbeddedScorer):
        raise TypeError("bench gateway measures the embedded scorer")
    encoded = router.tokenizer.encode([PROMPT])
    workers = available_cpus()
    best = 0.0
    for threads, per_row in itertools.product((None, 1), sorted({scorer.encoder.per_row, False})):
        encoder = OnnxEncoder(
            scorer.encoder.directory, scorer.encoder.variant, threads=threads, per_row=per_row
        )
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


TARGET_RATIO = 0.90  # closed-loop throughput against the bare encoder's batched throughput
ERRORS_MEAN = (
    "errors: every failed request (HTTP 4xx other than 429, 5xx, timeout, connection error); "
    "429 overload refusals are counted in refused_429, not in errors"
)


def _load_client() -> str:
    import aiohttp

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"aiohttp {aiohttp.__version__} on {loop}, one process"


def bench_gateway(
    pool: PoolConfig,
    clients: int = 32,
    requests: int = 5000,
    single_requests: int = 300,
    scorer_threads: int | None = None,
    decision_repeats: int = 200,
    encoder_batches: tuple[int, ...] = (8, 16, 32, 64),
    open_fraction: float = 0.8,
    open_seconds: float = 10.0,
    open_max_in_flight: int = 1024,
) -> dict[str, Any]:
    """Run the measurements and return the JSON-ready report (fields: docs/bench.md)."""
    if scorer_threads is None:
        scorer_threads = Settings.model_fields["scorer_threads"].default
    router = Router.from_pool(pool, threads=scorer_threads)  # the gateway's configuration, in-process
    body = json.dumps({"model": "ladder", "messages": [{"role": "user", "content": PROMPT}]}).encode()
    path = "/v1/chat/completions"
    with processes(pool, scorer_threads) as (stub_port, gateway_port):
        gateway_url = f"http://{HOST}:{gateway_port}{path}"
        decision = decision_p50_ms(router, decision_repeats)
        encoder_rps = encoder_batched_rps(router, encoder_batches)
        direct = run_async(sequential(f"http://{HOST}:{stub_port}{path}", body, single_requests))
        through = run_async(sequential(gateway_url, body, single_requests))
        for name, run in (("stub", direct), ("gateway", through)):
            if run.errors or run.counts()["overload_429"]:
                raise RuntimeError(f"the single-client run against the {name} failed: {run.counts()}")
        metrics_url = f"http://{HOST}:{gateway_port}/metrics"
        before = batch_totals(metrics_url)
        load = run_async(closed_loop(gateway_url, body, clients, requests))
        after = batch_totals(metrics_url)
        capacity = load.counts()["ok"] / load.seconds if load.seconds else 0.0
        rate = max(1.0, open_fraction * capacity)
        open_requests = max(1, round(rate * open_seconds))
        open_bound_s = (
            1.5 * open_seconds
        )  # Poisson arrivals: the last is due near open_seconds, rarely past this
        offered = run_async(
            open_loop(gateway_url, body, rate, open_requests, open_bound_s, open_max_in_flight, "poisson")
        )
        after_open = batch_totals(metrics_url)
    closed = _closed_report(load, clients, encoder_rps)
    closed["mean_scoring_batch"] = _mean_batch(before, after)
    opened = _open_report(offered, rate, open_fraction, open_requests, open_bound_s, open_max_in_flight)
    opened["mean_scoring_batch"] = _mean_batch(after, after_open)
    return {
        "single_client": {
            "added_p50_ms": round(_p50(through.latencies_ms) - _p50(direct.latencies_ms), 3),
            "decision_p50_ms": decision,
            "gateway_round_trip_p50_ms": _p50(through.latencies_ms),
            "stub_round_trip_p50_ms": _p50(direct.latencies_ms),
        },
        "concurrent": closed,
        "open_loop": opened,
        "load_client": _load_client(),
        "prompt_tokens": int(router.tokenizer.encode([PROMPT]).lengths[0]),
    }


def _mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float:
    return round((after[0] - before[0]) / max(1.0, after[1] - before[1]), 2)


def _closed_report(load: LoadResult, clients: int, encoder_rps: float) -> dict[str, Any]:
    """The closed-loop run against its target: admitted throughput ≥ 90% of the encoder's, zero errors."""
    summary = load.summary()
    for never in ("dropped_in_flight_cap", "unsent_past_max_seconds"):  # open-loop only
        summary.pop(never)
    throughput = summary.pop("admitted_rps")
    ratio = round(throughput / encoder_rps, 3) if encoder_rps else 0.0
    return {
        "mode": "closed-loop",
        "clients": clients,
        "requests": summary.pop("sent"),
        **summary,
        "throughput_rps": throughput,
        "encoder_batched_throughput_rps": encoder_rps,
        "throughput_vs_encoder": ratio,
        "target": {"throughput_vs_encoder_min": TARGET_RATIO, "errors": 0, "errors_mean": ERRORS_MEAN},
        "meets_target": ratio >= TARGET_RATIO and summary["errors"] == 0,
    }


def _open_report(
    offered: LoadResult, rate: float, fraction: float, planned: int, seconds: float, max_in_flight: int
) -> dict[str, Any]:
    """The open-loop run: Poisson arrivals at ``rate``, latency percentiles of the admitted requests."""
    return {
        "mode": "open-loop",
        "arrivals": "poisson",
        "rate_rps": round(rate, 1),
        "rate_fraction_of_closed_loop": fraction,
        "requests_planned": planned,
        "max_seconds": seconds,
        "max_in_flight": max_in_flight,
        **offered.summary(),
        "send_lag_max_ms": round(offered.send_lag_max_ms, 3),
        "errors_mean": ERRORS_MEAN,
    }
