"""An HTTP load generator on aiohttp: closed-loop clients and open-loop arrivals, every latency recorded."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import numpy as np

Arrivals = Literal["poisson", "fixed"]
# What became of one request. "overload_429" is the gateway refusing at once under load (Retry-After),
# counted apart from failures; "dropped" is an open-loop arrival not sent because the in-flight cap was full.
KINDS = ("ok", "overload_429", "http_4xx", "http_5xx", "http_other", "timeout", "connection")
FAILURES = ("http_4xx", "http_5xx", "http_other", "timeout", "connection")
PERCENTILES = (50, 90, 99)


def kind_of_status(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    if status == 429:
        return "overload_429"
    if 400 <= status < 500:
        return "http_4xx"
    if 500 <= status < 600:
        return "http_5xx"
    return "http_other"


@dataclass
class LoadResult:
    """Every request's outcome: when it was sent (s after the start), its latency (ms), its kind."""

    sent_at_s: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    dropped: int = 0
    past_max_seconds: int = 0
    seconds: float = 0.0
    send_lag_max_ms: float = 0.0

    @classmethod
    def combined(cls, parts: Sequence[LoadResult]) -> LoadResult:
        """Runs one after another as one: send times offset by the parts before, seconds added up."""
        out = cls()
        for part in parts:
            out.sent_at_s.extend(out.seconds + t for t in part.sent_at_s)
            out.latencies_ms.extend(part.latencies_ms)
            out.kinds.extend(part.kinds)
            out.dropped += part.dropped
            out.past_max_seconds += part.past_max_seconds
            out.send_lag_max_ms = max(out.send_lag_max_ms, part.send_lag_max_ms)
            out.seconds += part.seconds
        return out

    def record(self, sent_at_s: float, latency_ms: float, kind: str) -> None:
        self.sent_at_s.append(sent_at_s)
        self.latencies_ms.append(latency_ms)
        self.kinds.append(kind)

    @property
    def sent(self) -> int:
        return len(self.kinds)

    def counts(self) -> dict[str, int]:
        counted = Counter(self.kinds)
        return {kind: counted.get(kind, 0) for kind in KINDS}

    @property
    def errors(self) -> int:
        """Failures: every outcome but success and 429 overload refusals (drops are counted apart)."""
        counted = Counter(self.kinds)
        return sum(counted.get(kind, 0) for kind in FAILURES)

    def latencies(self, kind: str = "ok") -> np.ndarray:
        return np.array([ms for ms, k in zip(self.latencies_ms, self.kinds, strict=True) if k == kind])

    def summary(self) -> dict[str, Any]:
        """JSON-ready: counts by kind, and the latency percentiles of admitted (2xx) requests."""
        counts = self.counts()
        return {
            "sent": self.sent,
            "dropped_in_flight_cap": self.dropped,
            "unsent_past_max_seconds": self.past_max_seconds,
            "admitted": counts["ok"],
            "refused_429": counts["overload_429"],
            "errors": self.errors,
            "outcomes": counts,
            "seconds": round(self.seconds, 3),
            "admitted_rps": round(counts["ok"] / self.seconds, 1) if self.seconds else 0.0,
            "latency_ms": percentiles(self.latencies("ok")),
            "refused_429_latency_ms": percentiles(self.latencies("overload_429")),
        }


def percentiles(values: np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99/max in ms (None where nothing was measured)."""
    if not len(values):
        return {**{f"p{p}": None for p in PERCENTILES}, "max": None}
    out: dict[str, float | None] = {f"p{p}": round(float(np.percentile(values, p)), 3) for p in PERCENTILES}
    out["max"] = round(float(values.max()), 3)
    return out


class Poster:
    """POSTs one fixed JSON body over one aiohttp session and classifies what comes back."""

    def __init__(self, session: aiohttp.ClientSession, url: str, body: bytes) -> None:
        self.session = session
        self.url = url
        self.body = body
        self.headers = {"content-type": "application/json"}

    async def post(self) -> tuple[float, str]:
        """(latency in ms, kind) of one request; the body is read in full before the clock stops."""
        started = time.perf_counter()
        try:
            async with self.session.post(self.url, data=self.body, headers=self.headers) as response:
                await response.read()
                kind = kind_of_status(response.status)
        except TimeoutError:  # before OSError: TimeoutError is one
            kind = "timeout"
        except (aiohttp.ClientError, OSError):
            kind = "connection"
        return (time.perf_counter() - started) * 1000, kind


def session(connections: int, timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))


async def sequential(url: str, body: bytes, requests: int, warmup: int = 20, timeout_s: float = 30) -> LoadResult:
    """One client sending ``requests`` requests one after another (after ``warmup`` unrecorded ones)."""
    result = LoadResult()
    async with session(1, timeout_s) as client:
        poster = Poster(client, url, body)
        for _ in range(warmup):
            await poster.post()
        start = time.perf_counter()
        for _ in range(requests):
            sent_at = time.perf_counter() - start
            result.record(sent_at, *await poster.post())
        result.seconds = time.perf_counter() - start
    return result


async def closed_loop(url: str, body: bytes, clients: int, requests: int, timeout_s: float = 30) -> LoadResult:
    """``clients`` clients, each sending its next request once its last is answered; ``requests`` in all."""
    result = LoadResult()
    remaining = requests
    async with session(clients, timeout_s) as client:
        poster = Poster(client, url, body)
        start = time.perf_counter()

        async def one_client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                sent_at = time.perf_counter() - start
                result.record(sent_at, *await poster.post())

        await asyncio.gather(*(one_client() for _ in range(clients)))
        result.seconds = time.perf_counter() - start
    return result


def arrival_times(rate: float, requests: int, arrivals: Arrivals, seed: int = 0) -> np.ndarray:
    """Seconds after the start at which each request is due: a Poisson process or a fixed rate."""
    if rate <= 0:
        raise ValueError(f"the open-loop rate must be positive, not {rate}")
    if arrivals == "fixed":
        return np.arange(requests) / rate
    gaps = np.random.default_rng(seed).exponential(1 / rate, requests)
    times: np.ndarray = np.cumsum(gaps) - gaps[0]  # the first request goes at once
    return times


async def open_loop(
    url: str,
    body: bytes,
    rate: float,
    requests: int,
    max_seconds: float | None = None,
    max_in_flight: int = 1024,
    arrivals: Arrivals = "poisson",
    seed: int = 0,
    timeout_s: float = 30,
    on_arrival: Callable[[LoadResult, int], None] | None = None,
) -> LoadResult:
    """Send at ``rate`` per second on a schedule fixed in advance, whatever the answers.

    At most ``requests`` arrivals, none due after ``max_seconds``. An arrival that finds ``max_in_flight``
    requests unanswered is dropped and counted, not queued. Then waits for the answers (each bounded by
    ``timeout_s``). ``on_arrival(result, arrivals so far)`` runs after each arrival is sent or dropped.
    """
    result = LoadResult()
    schedule = arrival_times(rate, requests, arrivals, seed)
    if max_seconds is not None:
        result.past_max_seconds = int((schedule > max_seconds).sum())
        schedule = schedule[schedule <= max_seconds]
    in_flight: set[asyncio.Task[None]] = set()
    async with session(max_in_flight, timeout_s) as client:
        poster = Poster(client, url, body)

        async def one(sent_at: float) -> None:
            result.record(sent_at, *await poster.post())

        start = time.perf_counter()
        for index, due in enumerate(schedule.tolist()):
            delay = start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                result.send_lag_max_ms = max(result.send_lag_max_ms, -delay * 1000)
            if len(in_flight) >= max_in_flight:
                result.dropped += 1
            else:
                task = asyncio.create_task(one(time.perf_counter() - start))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if on_arrival is not None:
                on_arrival(result, index + 1)
        if in_flight:
            await asyncio.gather(*in_flight)
        result.seconds = time.perf_counter() - start
    return result
