"""The chaos run: many clients through the gateway while its upstreams fail at random, and what must hold.

Every request must get an answer or a clean error (502/503/504/429 in the OpenAI envelope, or a stream that
ends with an error event) within the deadline; no 500; no request reaches a model again after a call there
that may have been processed (counted at the upstream: only an explicit 5xx or 429 answer may be followed
by a second call to the same model); one audit line per request, refusals before any decision (a 503
while Triton is down with ``on_unavailable=error``, a 429 under overload) included.
``ladder bench chaos`` runs it against a gateway process, ``tests/test_gateway_chaos.py`` a short version in
the suite; ``ladder.bench.triton_outages`` adds kills and restarts of a real Triton to either.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import numpy as np

# how the fake upstreams answer, drawn per call
WEIGHTS = {
    "ok": 0.42,
    "continue": 0.08,
    "close": 0.05,
    "crlf": 0.05,
    "500": 0.1,
    "429": 0.05,
    "hang": 0.05,
    "reset": 0.1,
    "reset-stream": 0.1,
}
EXPLICIT_REFUSALS = frozenset({"500", "429"})  # answered before any work: a second call is not a duplicate
CLEAN_STATUSES = frozenset({429, 502, 503, 504})
GRACE_S = 2.0  # scoring and queueing before dispatch, on a busy 2-core machine
QUESTIONS = (
    "Summarise the plot of Hamlet in two sentences.",
    "東京から大阪まで新幹線で何時間かかりますか？",
    "Prove that there are infinitely many primes.",
    "Write a haiku about circuit breakers.",
)


@dataclass(frozen=True)
class Outcome:
    """One request as its client saw it."""

    status: int
    kind: str  # answered | clean error | unclean
    seconds: float  # to the whole answer, or to a stream's headers
    detail: str = ""
    started: float = 0.0  # time.perf_counter() when it was sent
    code: str = ""  # the error envelope's code, for a refusal before streaming


def _envelope(text: str) -> dict[str, Any] | None:
    """The ``error`` object of an OpenAI error envelope, or None when ``text`` is not one."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error) else None


async def _one(client: httpx.AsyncClient, path: str, index: int, stream: bool) -> Outcome:
    body = {
        "model": "ladder",
        "messages": [{"role": "user", "content": f"chaos {index}: {QUESTIONS[index % len(QUESTIONS)]}"}],
        "stream": stream,
    }
    started = time.perf_counter()
    try:
        async with client.stream("POST", path, json=body) as response:
            headers_at = time.perf_counter() - started
            text = (await response.aread()).decode()
            total = time.perf_counter() - started
    except httpx.HTTPError as exc:
        return Outcome(0, "unclean", time.perf_counter() - started, type(exc).__name__)
    status = response.status_code
    if status != 200:
        error = _envelope(text)
        clean = status in CLEAN_STATUSES and error is not None
        code = str(error["code"]) if error is not None else ""
        return Outcome(status, "clean error" if clean else "unclean", total, text[:200], code=code)
    if not stream:
        ok = "choices" in json.loads(text)
        return Outcome(status, "answered" if ok else "unclean", total, "" if ok else text[:200])
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e.startswith("data: ")]
    if events and events[-1] == "[DONE]":
        return Outcome(status, "answered", headers_at)
    if events and _envelope(events[-1]) is not None:
        return Outcome(status, "clean error", headers_at, "stream ended with an error event")
    return Outcome(status, "unclean", headers_at, f"stream ended without [DONE] or an error: {text[-200:]}")


async def drive(
    url: str,
    requests: int,
    clients: int,
    stream_every: int = 3,
    headers: dict[str, str] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> tuple[list[Outcome], float]:
    """``requests`` chat completions from ``clients`` concurrent clients; each ``stream_every``-th streams.
    ``on_outcome`` sees each outcome as it arrives; past ``requests``, more are sent while ``keep_going()``
    (both run on the event loop and must not block)."""
    indices = itertools.count()
    outcomes: list[Outcome] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, timeout=60.0, limits=limits, trust_env=False, headers=headers
    ) as client:

        async def worker() -> None:
            while (index := next(indices)) < requests or (keep_going is not None and keep_going()):
                sent = time.perf_counter()
                outcome = await _one(client, "/v1/chat/completions", index, index % stream_every == 0)
                outcome = replace(outcome, started=sent)
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        return outcomes, time.perf_counter() - started


def duplicates(log: Iterable[tuple[str, str, str]]) -> int:
    """Calls to a model for a request after an earlier call there that may have been processed."""
    risky: set[tuple[str, str]] = set()
    count = 0
    for model, key, mode in log:
        if (model, key) in risky:
            count += 1
        if mode not in EXPLICIT_REFUSALS:
            risky.add((model, key))
    return count


def verdict(
    outcomes: list[Outcome],
    seconds: float,
    upstream_log: list[tuple[str, str, str]],
    audit_lines: int,
    deadline_s: float,
) -> dict[str, Any]:
    """The run's figures and whether every property held (``ok``)."""
    kinds = Counter(o.kind for o in outcomes)
    statuses = Counter(str(o.status) for o in outcomes)
    latencies = np.array([o.seconds for o in outcomes]) * 1000
    late = sum(1 for o in outcomes if o.seconds > deadline_s + GRACE_S)
    dupes = duplicates(upstream_log)
    report: dict[str, Any] = {
        "requests": len(outcomes),
        "seconds": round(seconds, 2),
        "answered": kinds["answered"],
        "clean_errors": kinds["clean error"],
        "unclean": kinds["unclean"],
        "statuses": dict(sorted(statuses.items())),
        "http_500": statuses.get("500", 0),
        "late": late,
        "deadline_s": deadline_s,
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 1),
            "p99": round(float(np.percentile(latencies, 99)), 1),
            "max": round(float(latencies.max()), 1),
        },
        "upstream_calls": len(upstream_log),
        "upstream_modes": dict(sorted(Counter(mode for _, _, mode in upstream_log).items())),
        "duplicate_upstream_calls": dupes,
        "audit_lines": audit_lines,
        "unclean_examples": [o.detail for o in outcomes if o.kind == "unclean"][:5],
    }
    report["ok"] = kinds["unclean"] == 0 and late == 0 and dupes == 0 and audit_lines == len(outcomes)
    return report
