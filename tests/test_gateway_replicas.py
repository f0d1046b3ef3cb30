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
from gateway_support.common import API_KEY, UPSTREAM_KEY, UPSTREAM_KEY_ENV
from gateway_support.redis_server import running_redis
from gateway_support.serve_process import ServeProcess, clean_env
from gateway_support.upstream import FakeUpstream

from ladder.core.traffic_db import TrafficDB

pytest_plugins = ["gateway_support.fixtures", "postgres_support"]

pytestmark = pytest.mark.slow  # two gateway processes load their encoders (~20 s on 2 cores)

AGENT_KEY = "sk-coding-agent-key-0123456789"
# vision-pro answers the fake's 10 + 5 tokens for $0.000105: one answer spends this budget.
PROFILES = [{"name": "coding-agent", "key": AGENT_KEY, "daily_budget_usd": 0.0001}]
MESSAGES = [{"role": "user", "content": "Refactor the billing module"}]
SETTLE_S = 10.0  # the longest one replica's asynchronous write may take to show on the other


def auth(key: str = API_KEY, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture()
def replicas(
    test_pool: Path, upstream: FakeUpstream, redis_url: str, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[str, str, str]]:
    """Gateways A and B, started together; yields their URLs and the database's."""
    env = clean_env(
        LADDER_API_KEYS=API_KEY,
        LADDER_KEY_PROFILES=json.dumps(PROFILES),
        LADDER_REDIS_URL=redis_url,
        LADDER_TRAFFIC_DB=postgres_url,
        LADDER_SESSION_MARGIN="0.2",
        LADDER_RETRIES="0",
        **{UPSTREAM_KEY_ENV: UPSTREAM_KEY},
    )
    started = [ServeProcess(test_pool, env, tmp_path / f"{name}.log") for name in ("a", "b")]
    try:
        for replica in started:
            replica.wait_ready()
        yield started[0].url, started[1].url, postgres_url
    finally:
        for replica in started:
            replica.stop()


def chat(base: str, key: str = API_KEY, session: str | None = None) -> httpx.Response:
    headers = auth(key, **({"x-ladder-session-id": session} if session else {}))
    body = {"model": "ladder", "messages": MESSAGES}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)


def feedback(base: str, request_id: str, **outcome: Any) -> httpx.Response:
    """Feedback through ``base``, retried while the decision (written by the other replica off its request
    path) has not reached the database yet; any other answer is returned as it came."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        reply = httpx.post(f"{base}/v1/feedback", json={"request_id": request_id, **outcome}, headers=auth())
        if reply.status_code != 404 or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


def spent_today(base: str, key: str) -> float:
    """The key's spend today as replica ``base`` reads it, once some has landed (or after SETTLE_S)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        usage = httpx.get(f"{base}/v1/usage", headers=auth(key)).json()
        spent = float(usage["data"][0]["day"]["cost_usd"])
        if spent > 0 or time.monotonic() > deadline:
            return spent
        time.sleep(0.05)


def routed_for_session(base: str, session: str) -> str:
    """The model replica ``base`` would keep for ``session`` once the pin has landed (``/v1/route`` reads pins
    and never writes them, so asking does not race the other replica's write)."""
    headers = auth(**{"x-ladder-session-id": session})
    deadline = time.monotonic() + SETTLE_S
    while True:
        decision = httpx.post(f"{base}/v1/route", json={"model": "ladder", "messages": MESSAGES}, headers=headers)
        model = str(decision.json()["model"])
        if model != "vision-pro" or time.monotonic() > deadline:
            return model
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
