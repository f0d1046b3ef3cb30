"""The short chaos run scoring on a real tritonserver that is SIGKILLed and restarted mid-run.

Needs the Triton install (``scripts/install_triton.sh``) and skips with the reason when it is absent, like
``tests/test_gateway_triton.py``. ``ladder bench chaos --triton`` is the full-size run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import triton_helpers as th
from gateway_support.common import AUTH, RunningGateway

from ladder.bench.chaos import WEIGHTS, drive, verdict
from ladder.bench.faulty_upstream import RawUpstream, random_chooser
from ladder.bench.triton_outages import TritonOutages, router_repository
from ladder.core.router import Router
from ladder.export.triton_server import TritonServer
from ladder.gateway.triton_scorer import TritonScorer

pytest_plugins = ["gateway_support.fixtures", "gateway_support.elsewhere"]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

REQUESTS = 120  # at least; the run goes on until EVERY requests have followed Triton's restart
EVERY = 40  # completed requests before the kill, and after the gateway is back on Triton
DEADLINE_S = 2.0


@pytest.fixture(scope="module")
def triton(router: Router, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """tritonserver on a cpu export of the gateway test checkpoint."""
    pytest.importorskip("tritonclient.grpc.aio", reason="tritonclient is not installed")
    directory = tmp_path_factory.mktemp("chaos-triton")
    repository = router_repository(router, directory / "model_repository")
    server = th.server_or_skip(repository, log_path=directory / "triton.log")
    yield server
    server.stop()


def test_chaos_with_triton_killed_and_restarted_mid_run(
    raw: RawUpstream, gateway_at: Callable[..., RunningGateway], triton: TritonServer, tmp_path: Path
) -> None:
    raw.chooser = random_chooser(11, WEIGHTS)
    audit = tmp_path / "audit.jsonl"
    defaults = {"attempt_timeout_s": 60.0, "retries": 1, "breaker_failures": 5}  # the shipped defaults
    triton_settings = {"url": triton.grpc_url, "health_interval_s": 0.2}  # on_unavailable: embedded
    gateway = gateway_at(
        raw.url,
        deadline_s=DEADLINE_S,
        audit_log=str(audit),
        scorer="triton",
        triton=triton_settings,
        **defaults,
    )
    scorer = gateway.app.state.gateway.triton
    assert isinstance(scorer, TritonScorer) and scorer.up
    outages = TritonOutages(triton, 1, EVERY, lambda: scorer.up, down_s=0.5).start()
    try:
        outcomes, seconds = asyncio.run(
            drive(
                gateway.url,
                REQUESTS,
                clients=16,
                headers=AUTH,
                on_outcome=outages.completed,
                keep_going=outages.going,
            )
        )
    finally:
        outages.stop()
    total = len(outcomes)
    deadline = time.monotonic() + 10  # audit lines are written off the event loop
    while time.monotonic() < deadline and len(audit.read_text().splitlines()) < total:
        time.sleep(0.05)
    lines = len(audit.read_text().splitlines())
    report = verdict(outcomes, seconds, list(raw.log), lines, DEADLINE_S)
    section = outages.report(outcomes, DEADLINE_S, scorer.describe())

    assert report["unclean"] == 0, report["unclean_examples"]
    assert report["http_500"] == 0
    assert report["late"] == 0, report["latency_ms"]
    assert report["duplicate_upstream_calls"] == 0
    assert report["audit_lines"] == total
    # the faults were survived, not just reported; how many of the clean errors are 502s swings with the
    # circuit breakers (30-90% answered on a busy machine), so the bar is low: Triton's outage is judged below
    assert report["answered"] > total // 10
    assert section["kills"] == section["restarts"] == 1 and not section["errors"], section
    assert section["outage_requests"] > 0 and section["outage_unclean"] == 0, section
    assert section["outage_statuses"].get("503", 0) == 0  # on_unavailable=embedded: the fallback scores
    assert section["requests_after_back"] >= EVERY - 16  # the gateway went back to Triton under traffic
    assert (
        scorer.counts["failures"] >= 1 and scorer.counts["recoveries"] >= 1 and scorer.counts["fallback"] >= 1
    )
    assert section["scorer"]["serving"] == "triton"
    assert section["ok"], section
