"""State shared by gateway replicas through a real ``redis-server`` on loopback (Debian's package).

The store's contract is checked on both implementations; then two gateways, one in this process and one a
real ``ladder serve`` subprocess, share one Redis: a budget spent through A is refused by B, a session pinned
through A is kept through B, and one rate limit counts the requests of both. Without Redis the same two
gateways share nothing. Install the server with scripts/install_redis.sh; in CI a missing one fails.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from gateway_support.common import API_KEY, RunningGateway
from gateway_support.replicas import AGENT_KEY, AGENT_PROFILE, chat, replica_env, routed_for_session, spent_today
from gateway_support.serve_process import ServeProcess
from gateway_support.upstream import FakeUpstream

from ladder.core.loopback import free_port
from ladder.gateway.state import MemoryState, RedisState, StateStore

pytest_plugins = ["gateway_support.fixtures"]

LIMITED_KEY = "sk-limited-client-key-0123456789"
PROFILES = [AGENT_PROFILE, {"name": "limited", "key": LIMITED_KEY, "requests_per_minute": 2}]
SHARED = {"key_profiles": PROFILES, "session_margin": 0.2, "retries": 0}


def all_keys_expire(url: str) -> dict[str, int]:
    """Every key in Redis with its remaining TTL in ms (-1: none)."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    return {key: int(client.pttl(key)) for key in client.scan_iter("*")}


# ---- the store's contract, on both implementations ---------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> StateStore:
    if request.param == "memory":
        return MemoryState()
    return RedisState(request.getfixturevalue("redis_url"))


@pytest.mark.asyncio
async def test_the_store_contract(store: StateStore) -> None:
    try:
        assert await store.get("t:session") is None
        assert await store.put("t:session", "mid-cloud", 60, only_new=True)
        assert not await store.put("t:session", "vision-pro", 60, only_new=True)  # SET NX
        assert await store.get("t:session") == "mid-cloud"
        assert await store.put("t:session", "vision-pro", 60)
        assert await store.get("t:session") == "vision-pro"

        keys = [("t:usage:day", 120.0), ("t:usage:month", 3600.0)]
        adds = [store.add(keys, {"requests": 1, "cost_usd": 0.000105}) for _ in range(50)]
        await asyncio.gather(*adds)  # concurrent: the sums are exact only if each add is atomic
        day, month, missing = await store.totals(["t:usage:day", "t:usage:month", "t:none"])
        assert day == month and day["requests"] == 50 and missing == {}
        assert day["cost_usd"] == pytest.approx(50 * 0.000105, rel=1e-9)

        waits = [await store.throttle("t:rate", 3) for _ in range(4)]
        assert waits[:3] == [0, 0, 0] and 0 < waits[3] <= 20  # a minute's worth at once, then one per 20 s
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_memory_state_bounds_pins_but_never_evicts_counters() -> None:
    store = MemoryState(max_entries=3)
    await store.add([("t:usage", 60.0)], {"cost_usd": 1.5})
    for i in range(10):  # a flood of new conversations
        await store.put(f"t:session:{i}", "m", 60)
    assert [await store.get(f"t:session:{i}") for i in range(10)] == [None] * 7 + ["m"] * 3
    assert await store.totals(["t:usage"]) == [{"cost_usd": 1.5}]  # a budget cannot be reset this way


@pytest.mark.asyncio
async def test_every_redis_key_has_a_ttl(redis_url: str) -> None:
    store = RedisState(redis_url)
    try:
        await store.put("t:session", "m", 30, only_new=True)
        await store.add([("t:usage", 45.0)], {"requests": 1})
        await store.throttle("t:rate", 60)
    finally:
        await store.aclose()
    ttls = all_keys_expire(redis_url)
    assert set(ttls) == {"t:session", "t:usage", "t:rate"}
    assert 0 < ttls["t:session"] <= 30_000 and 0 < ttls["t:usage"] <= 45_000 and ttls["t:rate"] > 0


# ---- two gateways, one Redis -------------------------------------------------------------------------------


def test_two_replicas_share_budgets_sessions_and_rate_limits(
    start_gateway: Callable[..., RunningGateway],
    upstream: FakeUpstream,
    redis_url: str,
    test_pool: Path,
    tmp_path: Path,
) -> None:
    env = replica_env(LADDER_KEY_PROFILES=json.dumps(PROFILES), LADDER_REDIS_URL=redis_url)
    replica_b = ServeProcess(test_pool, env, tmp_path / "b.log")
    a = start_gateway(redis_url=redis_url, **SHARED).url
    try:
        replica_b.wait_ready()
        b = replica_b.url

        # a budget spent through A is refused by B
        first = chat(a, AGENT_KEY)
        assert first.status_code == 200 and first.json()["model"] == "vision-pro"
        assert spent_today(b, AGENT_KEY) == pytest.approx(0.000105)
        refused = chat(b, AGENT_KEY)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
        assert int(refused.headers["retry-after"]) >= 1
        assert chat(a, AGENT_KEY).status_code == 429

        # a session pinned through A is kept through B
        upstream.set("vision-pro", "fail")
        pinned = chat(a, API_KEY, session="shared-conversation")
        assert pinned.json()["model"] == "mid-cloud" and pinned.headers["x-ladder-session"] == "new"
        upstream.reset()
        assert routed_for_session(b, "shared-conversation") == "mid-cloud"
        kept = chat(b, API_KEY, session="shared-conversation")
        assert kept.headers["x-ladder-session"] == "kept" and kept.json()["model"] == "mid-cloud"
        assert kept.json()["ladder"]["reason"].startswith("kept for session")
        fresh = chat(b, API_KEY, session="another-conversation")
        assert fresh.json()["model"] == "vision-pro" and fresh.headers["x-ladder-session"] == "new"

        # one rate limit for both: 2 requests per minute in all
        assert chat(a, LIMITED_KEY).status_code == 200
        assert chat(b, LIMITED_KEY).status_code == 200
        limited = chat(a, LIMITED_KEY)
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
        usage_b = httpx.get(f"{b}/v1/usage", headers={"authorization": f"Bearer {AGENT_KEY}"}).json()
        assert usage_b["state"] == "redis"
    finally:
        replica_b.stop()
    ttls = all_keys_expire(redis_url)
    assert ttls and all(ttl > 0 for ttl in ttls.values()), ttls
    assert not any(secret in key for key in ttls for secret in (API_KEY, AGENT_KEY, LIMITED_KEY))


def test_without_redis_replicas_share_nothing(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    a, b = start_gateway(**SHARED).url, start_gateway(**SHARED).url
    assert chat(a, AGENT_KEY).status_code == 200
    assert chat(b, AGENT_KEY).status_code == 200  # B never saw A's spend
    assert chat(a, API_KEY, session="c").headers["x-ladder-session"] == "new"
    assert chat(b, API_KEY, session="c").headers["x-ladder-session"] == "new"


def test_a_redis_outage_refuses_limited_keys_unless_told_to_enforce_locally(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    closed = start_gateway(redis_url=down, **SHARED)
    refused = chat(closed.url, AGENT_KEY)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "state_unavailable"
    answered = chat(closed.url, API_KEY, session="s")  # no limits to enforce: served, without a session
    assert answered.status_code == 200 and "x-ladder-session" not in answered.headers

    local = start_gateway(redis_url=down, state_unavailable="local", **SHARED)
    assert chat(local.url, AGENT_KEY).status_code == 200
    assert chat(local.url, AGENT_KEY).status_code == 429  # the budget is held in this process meanwhile
    metrics = httpx.get(f"{local.url}/metrics").text
    failed = {
        ln.split("{")[1].split("}")[0] for ln in metrics.splitlines() if ln.startswith("ladder_state_errors_total")
    }
    assert {'operation="budget"'} <= failed
