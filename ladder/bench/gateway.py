"""``ladder bench gateway``: added latency, closed-loop throughput, open-loop p99 (instant stub)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import yaml

from ladder.bench.cpu_shares import CpuShares
from ladder.bench.encoder_reference import EncoderReference, EncoderSetting, Throughput
from ladder.bench.loadgen import LoadResult, closed_loop, open_loop, sequential
from ladder.core.loopback import free_port
from ladder.core.pool import PoolConfig
from ladder.core.router import Router
from ladder.gateway.settings import Settings

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


@dataclass(frozen=True)
class Running:
    """The stub and the gateway as started by `processes`."""

    stub_port: int
    gateway_port: int
    stub_pid: int
    gateway_pid: int


@contextmanager
def processes(pool: PoolConfig, scorer_threads: int | None) -> Iterator[Running]:
    """The stub and the gateway as subprocesses on loopback, once both answer."""
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
            yield Running(stub_port, gateway_port, stub.pid, gateway.pid)
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
    rounds: int = 5,
    reference_seconds: float = 4.0,
) -> dict[str, Any]:
    """Run the measurements and return the JSON-ready report (fields: docs/bench.md).

    The closed loop runs in ``rounds`` parts, each between two measurements of the bare encoder in the
    setting its sweep found best (about ``reference_seconds`` each): a round's ratio divides its throughput
    by the mean of the two beside it, so that a host whose speed drifts (shared cores) moves both alike.
    """
    if scorer_threads is None:
        scorer_threads = Settings.model_fields["scorer_threads"].default
    if rounds < 1 or requests < rounds:
        raise ValueError(f"need at least one request per round: {requests} requests, {rounds} rounds")
    router = Router.from_pool(pool, threads=scorer_threads)  # the gateway's configuration, in-process
    body = json.dumps({"model": "ladder", "messages": [{"role": "user", "content": PROMPT}]}).encode()
    path = "/v1/chat/completions"
    reference = EncoderReference(router, PROMPT)
    with processes(pool, scorer_threads) as running:
        gateway_url = f"http://{HOST}:{running.gateway_port}{path}"
        decision = decision_p50_ms(router, decision_repeats)
        setting, sweep_rps = reference.best(encoder_batches)
        direct = run_async(sequential(f"http://{HOST}:{running.stub_port}{path}", body, single_requests))
        through = run_async(sequential(gateway_url, body, single_requests))
        for name, run in (("stub", direct), ("gateway", through)):
            if run.errors or run.counts()["overload_429"]:
                raise RuntimeError(f"the single-client run against the {name} failed: {run.counts()}")
        metrics_url = f"http://{HOST}:{running.gateway_port}/metrics"
        before = batch_totals(metrics_url)
        closed = _closed_rounds(
            running, gateway_url, body, clients, requests, rounds, reference, setting, sweep_rps, reference_seconds
        )
        after = batch_totals(metrics_url)
        capacity = closed["throughput_rps"]
        rate = max(1.0, open_fraction * capacity)
        open_requests = max(1, round(rate * open_seconds))
        open_bound_s = 1.5 * open_seconds  # Poisson arrivals: the last is due near open_seconds, rarely past this
        offered = run_async(
            open_loop(gateway_url, body, rate, open_requests, open_bound_s, open_max_in_flight, "poisson")
        )
        after_open = batch_totals(metrics_url)
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


def _closed_rounds(
    running: Running,
    url: str,
    body: bytes,
    clients: int,
    requests: int,
    rounds: int,
    reference: EncoderReference,
    setting: EncoderSetting,
    sweep_rps: float,
    reference_seconds: float,
) -> dict[str, Any]:
    """The closed loop in rounds between measurements of the bare encoder, and its report against the target:
    the median round's throughput at least 90% of the encoder's beside it, zero errors."""
    encoder = [reference.stretch(setting, sweep_rps, reference_seconds)]
    parts: list[LoadResult] = []
    cpu = CpuShares()
    for index in range(rounds):
        count = requests // rounds + (requests % rounds if index == rounds - 1 else 0)
        with cpu.measure(running):
            parts.append(run_async(closed_loop(url, body, clients, count)))
        encoder.append(reference.stretch(setting, encoder[-1].rps, reference_seconds))
    answered = sum(part.counts()["ok"] for part in parts)
    return _closed_report(parts, clients, encoder, setting, sweep_rps, cpu.per_request(answered))


def _rps(run: LoadResult) -> float:
    return run.counts()["ok"] / run.seconds if run.seconds > 0 else 0.0


def _closed_report(
    parts: list[LoadResult],
    clients: int,
    encoder: list[Throughput],
    setting: EncoderSetting,
    sweep_rps: float,
    used: dict[str, float],
) -> dict[str, Any]:
    """The closed loop's rounds (``parts``, each between ``encoder[i]`` and ``encoder[i + 1]``) against the
    target: the median round at least 90% of the encoder's throughput beside it, and zero errors."""
    load = LoadResult.combined(parts)
    ratios = [
        _rps(part) / ((before.rps + after.rps) / 2)
        for part, before, after in zip(parts, encoder, encoder[1:], strict=False)
    ]
    summary = load.summary()
    for never in ("dropped_in_flight_cap", "unsent_past_max_seconds"):  # open-loop only
        summary.pop(never)
    throughput = summary.pop("admitted_rps")
    encoder_rps = float(np.mean([m.rps for m in encoder]))
    ratio = round(float(np.median(ratios)), 3)
    encoder_cpu = float(np.mean([m.cpu_ms_per_row for m in encoder]))
    return {
        "mode": "closed-loop",
        "clients": clients,
        "requests": summary.pop("sent"),
        **summary,
        "throughput_rps": throughput,
        "encoder_batched_throughput_rps": round(encoder_rps, 1),
        "throughput_vs_encoder": ratio,
        "rounds": [
            {
                "throughput_rps": round(_rps(part), 1),
                "encoder_before_rps": round(before.rps, 1),
                "encoder_after_rps": round(after.rps, 1),
                "throughput_vs_encoder": round(r, 3),
            }
            for part, before, after, r in zip(parts, encoder, encoder[1:], ratios, strict=False)
        ],
        "encoder_setting": setting.describe(),
        "encoder_sweep_best_rps": round(sweep_rps, 1),
        "cpu_ms_per_request": used,
        "encoder_cpu_ms_per_request": round(encoder_cpu, 2),
        "cpu_vs_encoder": round(encoder_cpu / used["total"], 3) if used.get("total") else None,
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
