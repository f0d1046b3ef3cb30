"""Overload run: measure the gateway's capacity, then offer four times that, open-loop; print JSON.

The gateway and an instant stub upstream run as subprocesses (``ladder.bench.gateway.processes``). Phase one is
closed-loop (``--clients`` clients back to back) and gives the capacity. Phase two sends at ``--factor``
times that rate on a fixed schedule, whatever the answers, from ``--senders`` processes, and samples the
gateway's resident memory. What it shows: the requests the gateway admits keep a bounded p99, the rest are
refused at once with 429 and Retry-After, memory stays flat, no 500s.

    ladder bench overload --seconds 20 > overload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from ladder.bench.gateway import HOST, PROMPT, processes
from ladder.bench.loadgen import open_loop
from ladder.core.pool import load_pool
from ladder.core.router import default_pool_path

BODY = json.dumps({"model": "ladder", "messages": [{"role": "user", "content": PROMPT}]}).encode()
PATH = "/v1/chat/completions"
Sample = tuple[float, int, float]  # (latency in seconds, status or 0 for a transport error, sent at)


async def _closed_loop(url: str, clients: int, seconds: float) -> list[Sample]:
    samples: list[Sample] = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one_client() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    status = (await client.post(PATH, content=BODY)).status_code
                except httpx.HTTPError:
                    status = 0
                samples.append((time.perf_counter() - started, status, started))

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return samples


KIND_STATUS = {"ok": 200, "overload_429": 429, "http_4xx": 400, "http_5xx": 500, "http_other": 300}


async def _open_loop(url: str, rate: float, seconds: float) -> tuple[list[Sample], float]:
    """Send at ``rate`` per second on a fixed schedule (the benchmark's aiohttp load generator, cheap per
    request so the sender does not starve the gateway of CPU); returns the samples and the sender's lag."""
    result = await open_loop(
        url + PATH, BODY, rate, int(rate * seconds), arrivals="fixed", max_in_flight=4096, timeout_s=60
    )
    samples = [
        (ms / 1000, KIND_STATUS.get(kind, 0), sent)
        for sent, ms, kind in zip(result.sent_at_s, result.latencies_ms, result.kinds, strict=True)
    ]
    return samples, result.send_lag_max_ms / 1000


def _sender(url: str, rate: float, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_open_loop(url, rate, seconds)))


def _gateway_pid() -> int:
    """The ``python -m ladder.gateway`` child of this process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"ladder.gateway" in cmdline:
            return int(entry.name)
    raise RuntimeError("the gateway process was not found")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _routing_buckets(url: str) -> dict[float, float]:
    """The gateway's routing-latency histogram (queue wait + scoring + policy): cumulative count per bound."""
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "ladder_routing_latency_seconds_bucket":
                buckets[float(sample.labels["le"])] = sample.value
    return buckets


def _server_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Upper bounds of the routing latency's p50/p99 over the overload phase, from the histogram's buckets."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    out: dict[str, Any] = {"decisions": int(total)}
    for q in (50, 99):
        bound = next((b for b, c in counts.items() if total and c >= total * q / 100), float("inf"))
        out[f"p{q}_at_most_s"] = None if bound == float("inf") else bound
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ms = np.asarray(values) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99)} | {
        "max_ms": round(float(ms.max()), 1)
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ["LADDER_SCORE_QUEUE_MAX"] = str(args.queue)
    os.environ["LADDER_SCORE_QUEUE_WAIT_S"] = str(args.queue_wait)
    os.environ["LADDER_LOG_LEVEL"] = "error"
    pool = load_pool(args.pool)
    with processes(pool, scorer_threads=1) as running:
        url = f"http://{HOST}:{running.gateway_port}"
        pid = _gateway_pid()
        asyncio.run(_closed_loop(url, args.clients, 2.0))  # warm up
        closed = asyncio.run(_closed_loop(url, args.clients, args.capacity_seconds))
        ok = [sample for sample in closed if sample[1] == 200]
        capacity = len(ok) / args.capacity_seconds
        rss_before = _rss_mb(pid)

        rss: list[tuple[float, float]] = []
        done = threading.Event()

        def sample_memory() -> None:
            started = time.monotonic()
            while not done.wait(0.25):
                rss.append((time.monotonic() - started, _rss_mb(pid)))

        histogram_before = _routing_buckets(url)
        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        offered = args.factor * capacity
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        senders = [
            ctx.Process(target=_sender, args=(url, offered / args.senders, args.seconds, queue))
            for _ in range(args.senders)
        ]
        for sender in senders:
            sender.start()
        results = [queue.get() for _ in senders]
        for sender in senders:
            sender.join()
        done.set()
        sampler.join()
        routing = _server_quantiles(histogram_before, _routing_buckets(url))

    samples = [s for part, _ in results for s in part]
    statuses = Counter(status for _, status, _ in samples)
    admitted = [latency for latency, status, _ in samples if status == 200]
    refused = [latency for latency, status, _ in samples if status == 429]
    early = [lat for lat, status, sent in samples if status == 200 and sent < args.seconds / 2]
    late = [lat for lat, status, sent in samples if status == 200 and sent >= args.seconds / 2]
    memory = [m for _, m in rss]
    half = len(memory) // 2
    return {
        "capacity": {
            "clients": args.clients,
            "seconds": args.capacity_seconds,
            "throughput_rps": round(capacity, 1),
            "latency": _percentiles([latency for latency, _, _ in ok]),
            "errors": len(closed) - len(ok),
        },
        "overload": {
            "factor": args.factor,
            "offered_rps": round(offered, 1),
            "seconds": args.seconds,
            "senders": args.senders,
            "sender_max_lag_s": round(max(lag for _, lag in results), 3),
            "requests": len(samples),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "admitted_rps": round(len(admitted) / args.seconds, 1),
            "admitted_latency_at_client": _percentiles(admitted),
            "admitted_latency_sent_in_first_half": _percentiles(early),
            "admitted_latency_sent_in_second_half": _percentiles(late),
            "admitted_routing_latency_in_gateway": routing,
            "refused_latency_at_client": _percentiles(refused),
            "server_errors": sum(v for k, v in statuses.items() if k >= 500),
            "transport_errors": statuses.get(0, 0),
        },
        "gateway_rss_mb": {
            "before": round(rss_before, 1),
            "first_half_max": round(max(memory[:half] or [0.0]), 1),
            "second_half_max": round(max(memory[half:] or [0.0]), 1),
            "end": round(memory[-1] if memory else 0.0, 1),
        },
        "score_queue_max": args.queue,
        "score_queue_wait_s": args.queue_wait,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ladder bench overload", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", type=Path, default=default_pool_path())
    parser.add_argument("--clients", type=int, default=32, help="closed-loop clients for the capacity")
    parser.add_argument("--capacity-seconds", type=float, default=10.0)
    parser.add_argument("--factor", type=float, default=4.0, help="offered load / capacity")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the overload phase")
    parser.add_argument("--senders", type=int, default=2, help="open-loop sender processes")
    parser.add_argument("--queue", type=int, default=256, help="the gateway's score_queue_max")
    parser.add_argument("--queue-wait", type=float, default=2.0, help="the gateway's score_queue_wait_s")
    print(json.dumps(run(parser.parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
