"""Two real ``ladder serve`` processes share one PostgreSQL and one Redis: they agree on everything.

Both replicas start at once against an empty database (their table creation must not collide); then a
request answered by A is rated through B and the other way round, a budget spent through A shows on both and
is refused by B, and a session pinned through A is kept through B. The upstream is the loopback fake; the
database and Redis are real servers started by the tests (scripts/install_postgres.sh, install_redis.sh).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support.replicas import (
    AGENT_KEY,
    AGENT_PROFILE,
    SETTLE_S,
    auth,
    chat,
    replica_env,
    routed_for_session,
    spent_today,
)
from gateway_support.serve_process import ServeProcess
from gateway_support.upstream import FakeUpstream

from ladder.core.traffic_db import TrafficDB

pytest_plugins = ["gateway_support.fixtures", "postgres_support"]

pytestmark = pytest.mark.slow  # two gateway processes load their encoders (~20 s on 2 cores)

@pytest.fixture()
def replicas(
    test_pool: Path, upstream: FakeUpstream, redis_url: str, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[str, str, str]]:
    """Gateways A and B, started together; yields their URLs and the database's."""
    env = replica_env(
        LADDER_KEY_PROFILES=json.dumps([AGENT_PROFILE]), LADDER_REDIS_URL=redis_url, LADDER_TRAFFIC_DB=postgres_url
    )
    started = [ServeProcess(test_pool, env, tmp_path / f"{name}.log") for name in ("a", "b")]
    try:
        for replica in started:
            replica.wait_ready()
        yield started[0].url, started[1].url, postgres_url
    finally:
        for replica in started:
            replica.stop()


def feedback(base: str, request_id: str, **outcome: Any) -> httpx.Response:
    """Feedback through ``base``, retried while the decision (written by the other replica off its request
    path) has not reached the database yet; any other answer is returned as it came."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        reply = httpx.post(f"{base}/v1/feedback", json={"request_id": request_id, **outcome}, headers=auth())
        if reply.status_code != 404 or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


def test_two_replicas_agree_on_feedback_budgets_and_sessions(
    replicas: tuple[str, str, str], upstream: FakeUpstream
) -> None:
    a, b, database = replicas

    # feedback: answered by A, rated through B; answered by B, rated through A
    on_a, on_b = chat(a), chat(b)
    assert on_a.status_code == on_b.status_code == 200
    id_a, id_b = on_a.headers["x-ladder-request-id"], on_b.headers["x-ladder-request-id"]
    rated_b = feedback(b, id_a, thumbs="down", comment="wrong")
    assert rated_b.status_code == 200, rated_b.text
    assert rated_b.json()["model"] == on_a.json()["model"] == "vision-pro"
    assert feedback(a, id_b, score=0.75).status_code == 200
    stored = TrafficDB(database, create=False)
    try:
        outcomes = {o.request_id: o for o in stored.iter_outcomes()}
        assert (outcomes[id_a].label, outcomes[id_a].source, outcomes[id_a].comment) == (
            0.0,
            "feedback:thumbs",
            "wrong",
        )
        assert (outcomes[id_b].label, outcomes[id_b].source) == (0.75, "feedback:score")
        assert {id_a, id_b} <= {d.request_id for d in stored.iter_decisions()}
    finally:
        stored.close()
    unknown = httpx.post(f"{b}/v1/feedback", json={"request_id": "never-made", "thumbs": "up"}, headers=auth())
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "request_id"

    # budgets: spent through A, the same on both, refused by B
    assert chat(a, AGENT_KEY).status_code == 200
    assert spent_today(b, AGENT_KEY) == pytest.approx(0.000105)
    assert spent_today(a, AGENT_KEY) == pytest.approx(0.000105)
    refused = chat(b, AGENT_KEY)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"

    # sessions: pinned through A (its first choice failing there), kept through B
    upstream.set("vision-pro", "fail")
    pinned = chat(a, session="shared-conversation")
    assert pinned.json()["model"] == "mid-cloud" and pinned.headers["x-ladder-session"] == "new"
    upstream.reset()
    assert routed_for_session(b, "shared-conversation") == "mid-cloud"
    kept = chat(b, session="shared-conversation")
    assert kept.headers["x-ladder-session"] == "kept" and kept.json()["model"] == "mid-cloud"
    assert kept.json()["ladder"]["reason"].startswith("kept for session")
