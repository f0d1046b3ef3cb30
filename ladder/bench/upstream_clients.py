"""``python -m ladder.bench.upstream_clients``: CPU per upstream call of each connection pool, in one run, as JSON.

Both pools (``upstream_http: aiohttp`` and ``httpx``) send the same chat completions to the instant stub
through ``ladder.core.upstream.UpstreamClient`` with 32 calls in flight. CPU time (not wall time) per call is the
figure that matters on a shared machine: the gateway's throughput is its CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any

from ladder.core.loopback import free_port as _free_port
from ladder.core.pool import ModelSpec
from ladder.core.upstream import HttpClient, UpstreamClient

HOST = "127.0.0.1"
BODY = {"messages": [{"role": "user", "content": "When does the second train catch up with the first?"}]}




def _wait_for(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the stub did not listen on port {port}")


async def _measure(http: HttpClient, spec: ModelSpec, calls: int, in_flight: int) -> dict[str, Any]:
    client = UpstreamClient(5.0, 256, http=http)
    gate = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with gate:
            await client.send(spec, BODY, 60.0, False, {})

    try:
        await asyncio.gather(*[one() for _ in range(min(calls, 300))])  # warm the pool
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*[one() for _ in range(calls)])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await client.aclose()
    return {"cpu_us_per_call": round(cpu / calls * 1e6, 1), "wall_calls_per_s": round(calls / wall, 1)}


def bench_upstream_clients(calls: int = 4000, in_flight: int = 32) -> dict[str, Any]:
    """Each pool's CPU per call against the same stub, alternating twice to even out a busy machine."""
    port = _free_port()
    stub = subprocess.Popen([sys.executable, "-m", "ladder.bench.stub", "--port", str(port)])
    try:
        _wait_for(port)
        spec = ModelSpec.model_validate(
            {
                "name": "stub",
                "upstream": {"base_url": f"http://{HOST}:{port}/v1", "model": "stub"},
                "price": {"input_per_1m": 1.0, "output_per_1m": 1.0},
                "context_window": 8192,
            }
        )
        pools: tuple[HttpClient, ...] = ("aiohttp", "httpx")
        runs: dict[str, list[dict[str, Any]]] = {http: [] for http in pools}
        for _ in range(2):
            for http in pools:
                runs[http].append(asyncio.run(_measure(http, spec, calls, in_flight)))
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    report: dict[str, Any] = {"calls": calls, "in_flight": in_flight}
    for name, results in runs.items():
        report[name] = {
            "cpu_us_per_call": min(r["cpu_us_per_call"] for r in results),
            "wall_calls_per_s": max(r["wall_calls_per_s"] for r in results),
        }
    report["httpx_cpu_over_aiohttp"] = round(
        report["httpx"]["cpu_us_per_call"] / report["aiohttp"]["cpu_us_per_call"], 2
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(bench_upstream_clients(args.calls, args.in_flight)))


if __name__ == "__main__":
    main()
