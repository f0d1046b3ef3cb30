"""The shared-state work one request adds (admission, session, usage), in memory and in Redis, as JSON.

Usage: .venv/bin/python research/bench_state.py [--redis-url redis://127.0.0.1:6379/0] [--requests 2000]
Without --redis-url it starts Debian's redis-server on a free loopback port when one is installed. Each
request does what the gateway does for a profiled key with a rate limit, a budget and a session: the GCRA
rate limit, the budget read, the session read and write, and the usage write. Reports p50/p99 per request
sequentially and the throughput of 32 concurrent requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ladder.core.policy import Decision, DecisionOptions, decide
from ladder.gateway.keys import Client, KeyProfile, Limits
from ladder.gateway.metrics import GatewayMetrics
from ladder.gateway.sessions import Sessions
from ladder.gateway.state import MemoryState, RedisState, StateStore

PROFILE = KeyProfile.model_validate(
    {"name": "bench", "key": "bench-key-0123456789", "requests_per_minute": 10**9, "daily_budget_usd": 1e9}
)
BODY = {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]}


async def one_request(limits: Limits, sessions: Sessions, decision: Decision, n: int) -> None:
    client = Client("bench", PROFILE)
    await limits.admit(client)
    ref = sessions.ref({"x-ladder-session-id": f"s{n % 500}"}, BODY, None, client.name, DecisionOptions())
    await sessions.apply(ref, decision)
    await limits.record(
        "bench", {"requests": 1, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 1e-4}
    )


async def measure(state: StateStore, requests: int) -> dict[str, Any]:
    limits = Limits(state, GatewayMetrics(), "bench:")
    sessions = Sessions(
        state, enabled=True, ttl_s=600, margin=0.1, header="x-ladder-session-id", prefix="bench:"
    )
    decision = decide({"a": 0.8, "b": 0.7}, {"a": 2e-4, "b": 1e-4}, DecisionOptions(tolerance=0.05))
    for n in range(50):  # warm up connections and scripts
        await one_request(limits, sessions, decision, n)
    latencies = []
    for n in range(requests):
        started = time.perf_counter()
        await one_request(limits, sessions, decision, n)
        latencies.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    queue = iter(range(requests))

    async def worker() -> None:
        for n in queue:
            await one_request(limits, sessions, decision, n)

    await asyncio.gather(*(worker() for _ in range(32)))
    elapsed = time.perf_counter() - started
    await sessions.drain()
    await state.aclose()
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "backend": state.backend,
        "requests": requests,
        "per_request_ms_p50": round(cuts[49], 4),
        "per_request_ms_p99": round(cuts[98], 4),
        "concurrent_32_requests_per_s": round(requests / elapsed, 1),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout_s: float = 30.0) -> None:
    import redis

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    report: dict[str, Any] = {"memory": asyncio.run(measure(MemoryState(), args.requests))}
    server = None
    url = args.redis_url
    if url is None and shutil.which("redis-server"):
        port = free_port()
        directory = tempfile.mkdtemp()
        command = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            directory,
        ]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(url)
    try:
        if url is not None:
            report["redis"] = asyncio.run(measure(RedisState(url), args.requests))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
