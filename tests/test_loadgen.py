"""The load generator against a scripted starlette server on loopback: counts by kind, open-loop arrivals."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ladder.bench.encoder_reference import EncoderSetting, Throughput
from ladder.bench.gateway import _closed_report, _open_report
from ladder.bench.loadgen import KINDS, LoadResult, arrival_times, closed_loop, open_loop
from ladder.bench.server_thread import ServerThread
from ladder.core.loopback import free_port

BODY = b'{"model": "ladder", "messages": [{"role": "user", "content": "hi"}]}'
DOCS = Path(__file__).resolve().parent.parent / "docs" / "bench.md"
# what the server did -> the kind the generator must report for it
EXPECTED_KIND = {
    "200": "ok",
    "slow": "ok",
    "429": "overload_429",
    "404": "http_4xx",
    "500": "http_5xx",
    "503": "http_5xx",
    "hold": "timeout",
}


class Scripted:
    """Answers its n-th request as ``plan[n]`` says, and counts what it did.

    "hold" answers once ``release`` is set (or never); "slow" answers 200 after 50 ms; a number is a status.
    With ``hold_until`` set, every request is held until that many have arrived.
    """

    def __init__(self, plan: list[str], hold_until: int | None = None) -> None:
        self.plan = plan
        self.hold_until = hold_until
        self.seen = 0
        self.did: Counter[str] = Counter()
        self.release = threading.Event()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.answer, methods=["POST"])])

    async def answer(self, request: Request) -> Response:
        await request.body()
        action = self.plan[self.seen % len(self.plan)]
        self.seen += 1
        if self.hold_until is not None:
            while self.seen < self.hold_until:
                await asyncio.sleep(0.005)
        if action == "hold":
            self.did[action] += 1
            while not self.release.is_set():
                await asyncio.sleep(0.005)
            return JSONResponse({"late": True})
        if action == "slow":
            await asyncio.sleep(0.05)
        self.did[action] += 1
        status = 200 if action == "slow" else int(action)
        headers = {"retry-after": "1"} if status == 429 else None
        return JSONResponse({"status": status}, status_code=status, headers=headers)


def expected_counts(did: Counter[str]) -> dict[str, int]:
    out = dict.fromkeys(KINDS, 0)
    for action, count in did.items():
        out[EXPECTED_KIND[action]] += count
    return out


def test_closed_loop_counts_each_kind_exactly_as_the_server_answered() -> None:
    plan = ["200"] * 8 + ["slow"] + ["429"] * 4 + ["500", "503", "500"] + ["404"] * 2 + ["hold"]
    server = Scripted(plan)
    with ServerThread(server.app, graceful_s=0.1) as running:
        url = f"{running.url}/v1/chat/completions"
        result = asyncio.run(closed_loop(url, BODY, clients=4, requests=len(plan), timeout_s=3))
        server.release.set()
    assert server.seen == len(plan) == result.sent == len(result.latencies_ms)
    assert result.counts() == expected_counts(server.did)
    assert result.counts() == {
        "ok": 9,
        "overload_429": 4,
        "http_4xx": 2,
        "http_5xx": 3,
        "http_other": 0,
        "timeout": 1,
        "connection": 0,
    }
    assert result.errors == 6  # 429 refusals are not errors
    summary = result.summary()
    assert (summary["admitted"], summary["refused_429"], summary["errors"]) == (9, 4, 6)
    assert summary["latency_ms"]["max"] >= summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"] > 0


def test_a_refused_connection_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/chat/completions"  # nothing listens there
    result = asyncio.run(closed_loop(url, BODY, clients=2, requests=5, timeout_s=5))
    assert result.counts()["connection"] == 5 and result.errors == 5 and result.summary()["admitted"] == 0
    assert result.summary()["latency_ms"] == {"p50": None, "p90": None, "p99": None, "max": None}


@pytest.mark.parametrize("arrivals", ["poisson", "fixed"])
def test_open_loop_sends_every_request_before_any_is_answered(arrivals: str) -> None:
    requests = 25
    server = Scripted(["200", "slow", "429"], hold_until=requests)  # nothing answered until all 25 arrived
    with ServerThread(server.app, graceful_s=0.1) as running:
        url = f"{running.url}/v1/chat/completions"
        result = asyncio.run(
            open_loop(url, BODY, rate=500, requests=requests, arrivals=arrivals, timeout_s=20)  # type: ignore[arg-type]
        )
    assert server.seen == requests == result.sent and result.dropped == 0
    assert result.counts() == expected_counts(server.did)
    assert result.counts()["overload_429"] == 8 and result.errors == 0


def test_open_loop_drops_arrivals_beyond_the_in_flight_cap() -> None:
    server = Scripted(["hold"])

    def release_after_the_last(result: LoadResult, arrived: int) -> None:
        if arrived == 10:
            server.release.set()

    with ServerThread(server.app, graceful_s=0.1) as running:
        url = f"{running.url}/v1/chat/completions"
        result = asyncio.run(
            open_loop(url, BODY, 1000, 10, max_in_flight=3, timeout_s=20, on_arrival=release_after_the_last)
        )
    assert (result.sent, result.dropped, server.seen) == (3, 7, 3)
    assert result.counts()["ok"] == 3 and result.summary()["dropped_in_flight_cap"] == 7


def test_open_loop_is_bounded_in_time_as_well_as_count() -> None:
    assert len(arrival_times(100, 1000, "fixed")) == 1000
    fixed = arrival_times(100, 1000, "fixed")
    assert fixed[0] == 0 and np.allclose(np.diff(fixed), 0.01)
    poisson = arrival_times(100, 20_000, "poisson", seed=3)
    assert poisson[0] == 0 and np.all(np.diff(poisson) >= 0)
    assert 0.0095 < float(np.diff(poisson).mean()) < 0.0105
    with pytest.raises(ValueError, match="rate"):
        arrival_times(0, 10, "poisson")
    # with max_seconds the schedule stops early: nothing listens, so every sent request is a connection error
    url = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    result = asyncio.run(open_loop(url, BODY, rate=100, requests=1000, max_seconds=0.05, arrivals="fixed"))
    assert result.sent == 6 and result.counts()["connection"] == 6
    assert result.summary()["unsent_past_max_seconds"] == 994


def documented_fields(section: str) -> set[str]:
    """The ``section.field`` names docs/bench.md lists in its tables."""
    names = re.findall(rf"^\| `{section}\.([a-z0-9_]+)`", DOCS.read_text(encoding="utf-8"), re.MULTILINE)
    return set(names)


def test_the_report_has_exactly_the_documented_fields() -> None:
    server = Scripted(["200", "429", "500"])
    with ServerThread(server.app, graceful_s=0.1) as running:
        url = f"{running.url}/v1/chat/completions"
        closed = asyncio.run(closed_loop(url, BODY, clients=2, requests=9))
        offered = asyncio.run(open_loop(url, BODY, rate=200, requests=9))
    encoder = [Throughput(100.0, 20.0), Throughput(100.0, 20.0)]
    setting = EncoderSetting(threads=1, per_row=False, batch=8, parallel=2)
    report = _closed_report([closed], 2, encoder, setting, 100.0, {})
    assert (report["requests"], report["refused_429"], report["errors"]) == (9, 3, 3)
    assert report["meets_target"] is False and "429" in report["target"]["errors_mean"]
    opened = _open_report(offered, rate=200, fraction=0.8, planned=9, seconds=10, max_in_flight=64)
    assert (opened["sent"], opened["refused_429"], opened["errors"]) == (9, 3, 3)
    assert set(report) | {"mean_scoring_batch"} == documented_fields("concurrent")
    assert set(opened) | {"mean_scoring_batch"} == documented_fields("open_loop")
