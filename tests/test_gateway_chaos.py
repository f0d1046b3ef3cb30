"""A short chaos run in the suite: random upstream faults, concurrent clients, the checks of ladder.bench.chaos."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from gateway_support.common import AUTH, RunningGateway

from ladder.bench.chaos import WEIGHTS, drive, verdict
from ladder.bench.faulty_upstream import RawUpstream, random_chooser

pytest_plugins = ["gateway_support.fixtures", "gateway_support.elsewhere"]

REQUESTS = 120
DEADLINE_S = 2.0


def test_chaos_every_request_is_answered_or_cleanly_refused_and_never_sent_twice(
    raw: RawUpstream, gateway_at: Callable[..., RunningGateway], tmp_path: Path
) -> None:
    raw.chooser = random_chooser(7, WEIGHTS)
    audit = tmp_path / "audit.jsonl"
    defaults = {"attempt_timeout_s": 60.0, "retries": 1, "breaker_failures": 5}  # the shipped defaults
    gateway = gateway_at(raw.url, deadline_s=DEADLINE_S, audit_log=str(audit), **defaults)
    outcomes, seconds = asyncio.run(drive(gateway.url, REQUESTS, clients=16, headers=AUTH))
    deadline = time.monotonic() + 10  # audit lines are written off the event loop
    while time.monotonic() < deadline and len(audit.read_text().splitlines()) < REQUESTS:
        time.sleep(0.05)
    report = verdict(outcomes, seconds, list(raw.log), len(audit.read_text().splitlines()), DEADLINE_S)
    assert report["unclean"] == 0, report["unclean_examples"]
    assert report["http_500"] == 0
    assert report["late"] == 0, report["latency_ms"]
    assert report["duplicate_upstream_calls"] == 0
    assert report["audit_lines"] == REQUESTS
    assert report["answered"] > REQUESTS // 2  # the faults were survived, not just reported
    assert {"hang", "reset", "reset-stream", "500", "429", "continue"} <= set(report["upstream_modes"])
