"""Attacks on budgets, tenants and resources through a real gateway and a loopback upstream stub: concurrent
requests against a small budget (in-process and real Redis), an abandoned stream, a Redis killed mid-run,
a reused ``x-request-id``, feedback from another key, hostile JSON bodies, keep-alive comments."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support.pool import shared_pool
from gateway_support.redis_server import redis_binary, redis_url_at, start_redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ladder.bench.server_thread import ServerThread
from ladder.core.loopback import free_port
from ladder.core.router import Router
from ladder.core.traffic_db import TrafficDB
from ladder.gateway.app import create_app
from ladder.gateway.capabilities import prompt_tokens
from ladder.gateway.settings import load_settings
from ladder.gateway.spend import held_input_tokens, worst_case_usd
from ladder.gateway.state import Hold, MemoryState, RedisState, StateStore

pytest_plugins = ["gateway_support.fixtures"]

KEY_A = "sk-tenant-alpha-key-0123456789"
KEY_B = "sk-tenant-bravo-key-0123456789"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
# the stub reports 10 prompt and 5 completion tokens: vision-pro ($3 / $15 per 1M) costs $0.000105
COST = (10 * 3.0 + 5 * 15.0) / 1e6


@dataclass
class Stub:
    """What the stub upstream does per model, and how many calls it received."""

    modes: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    release: threading.Event = field(default_factory=threading.Event)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return f"data: {json.dumps({'id': 'c', 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n".encode()


def stub_app(stub: Stub) -> Starlette:
    async def chat(request: Request) -> Response:
        model = request.path_params["model"]
        body = await request.json()
        stub.calls += 1
        mode = stub.modes.get(model, "ok")
        if mode == "slow":
            await asyncio.sleep(0.5)  # every concurrent request is in flight at once
        if mode == "hang":  # until the gateway hangs up (or the module ends)
            for _ in range(600):
                if stub.release.is_set() or await request.is_disconnected():
                    break
                await asyncio.sleep(0.1)
            return JSONResponse({"error": {"message": "released"}}, status_code=503)
        if not body.get("stream"):
            message = {"role": "assistant", "content": f"{model} says hi"}
            usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            choices = [{"index": 0, "message": message, "finish_reason": "stop"}]
            return JSONResponse({"id": "c", "object": "chat.completion", "choices": choices, "usage": usage})

        async def events() -> AsyncIterator[bytes]:
            yield _chunk({"role": "assistant", "content": "Paris is the capital and the largest city of France"})
            for _ in range(600):  # then nothing but keep-alive comments (or silence) for up to a minute
                if stub.release.is_set() or await request.is_disconnected():
                    return
                if mode == "keepalive":
                    yield b": keep-alive\n\n"
                await asyncio.sleep(0.1)

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/{model}/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def stub_server() -> Iterator[tuple[Stub, ServerThread]]:
    stub = Stub()
    with ServerThread(stub_app(stub), graceful_s=0.2) as server:
        yield stub, server
        stub.release.set()


@pytest.fixture()
def stub(stub_server: tuple[Stub, ServerThread]) -> Stub:
    state, _ = stub_server
    state.modes.clear()
    state.calls = 0
    return state


@pytest.fixture(scope="module")
def test_pool(tmp_path_factory: pytest.TempPathFactory, stub_server: tuple[Stub, ServerThread]) -> Path:
    """The test pool behind the stub (``router`` decides over it)."""
    return shared_pool(tmp_path_factory.mktemp("budgets"), stub_server[1].url, None)


@pytest.fixture()
def serve(router: Router, test_pool: Path) -> Iterator[Callable[..., str]]:
    """Start gateways over the stub (stopped after the test); their URLs."""
    running: list[ServerThread] = []

    def start(**overrides: Any) -> str:
        profiles = overrides.pop("profiles", {})
        values: dict[str, Any] = {
            "pool": test_pool,
            "key_profiles": [
                {"name": "alpha", "key": KEY_A, **profiles.get("alpha", {})},
                {"name": "bravo", "key": KEY_B, **profiles.get("bravo", {})},
            ],
            "attempt_timeout_s": 5.0,
            "deadline_s": 10.0,
            "retries": 0,
            **overrides,
        }
        settings = load_settings(None, **values)
        server = ServerThread(create_app(settings, router=router), graceful_s=0.2).start()
        running.append(server)
        return server.url

    yield start
    for server in running:
        server.stop()


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def chat(url: str, key: str, **body: Any) -> httpx.Response:
    payload = {"model": "vision-pro", "messages": MESSAGES, "max_tokens": 5, **body}
    return httpx.post(f"{url}/v1/chat/completions", json=payload, headers=auth(key), timeout=30)


def concurrent_chats(url: str, key: str, count: int) -> list[httpx.Response]:
    """``count`` chats from ``key`` sent at once, one thread each; the replies in the order they came."""
    replies: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: replies.append(chat(url, key))) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def spent(url: str, key: str, requests: int, deadline_s: float = 10.0) -> dict[str, Any]:
    """Today's usage once ``requests`` answers have settled (spend is written just after each answer)."""
    deadline = time.monotonic() + deadline_s
    while True:
        day: dict[str, Any] = httpx.get(f"{url}/v1/usage", headers=auth(key)).json()["data"][0]["day"]
        if day["requests"] >= requests or time.monotonic() > deadline:
            return day
        time.sleep(0.02)


def worst_case(router: Router) -> float:
    body = {"messages": MESSAGES}
    held = held_input_tokens(prompt_tokens(body))
    return worst_case_usd([router.pool.model("vision-pro")], held, 5)


# ---- budgets that hold -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "redis"])
@pytest.mark.asyncio
async def test_the_hold_contract(backend: str, request: pytest.FixtureRequest) -> None:
    """Both stores: a hold is refused once spend plus live holds reach a budget (naming which), settling
    drops the hold and adds the spend in one step, and a hold never settled expires."""
    if backend == "redis":
        store: StateStore = RedisState(request.getfixturevalue("redis_url"))
    else:
        store = MemoryState()
    usage = ["t:usage:{c}:day", "t:usage:{c}:month"]
    try:
        await store.add([(usage[0], 60.0), (usage[1], 60.0)], {"cost_usd": 0.5})
        first = Hold("t:hold:{c}", "one", 0.3, 60.0)
        assert await store.reserve(first, usage, [1.0, 10.0]) is None  # 0.5 spent < 1.0
        assert await store.reserve(Hold("t:hold:{c}", "two", 0.3, 60.0), usage, [1.0, 10.0]) is None
        refused = await store.reserve(Hold("t:hold:{c}", "three", 0.3, 60.0), usage, [1.0, 10.0])
        assert refused is not None and refused.index == 0  # 0.5 spent + 0.6 held reach the daily budget
        assert refused.committed_usd == pytest.approx(1.1)
        assert await store.reserve(Hold("t:hold:{c}", "four", 0.3, 60.0), usage, [None, 10.0]) is None
        await store.settle(first, [(usage[0], 60.0), (usage[1], 60.0)], {"cost_usd": 0.1, "requests": 1})
        totals = await store.totals(usage)
        assert totals[0] == {"cost_usd": pytest.approx(0.6), "requests": 1.0} and totals[1] == totals[0]
        # "two" and "four" still held: 0.6 + 0.6 reach 1.0; after they expire, 0.6 does not
        assert await store.reserve(Hold("t:hold:{c}", "five", 0.1, 0.2), usage, [1.0, None]) is not None
        await store.settle(Hold("t:hold:{c}", "two", 0.3, 60.0), [], {})
        await store.settle(Hold("t:hold:{c}", "four", 0.3, 60.0), [], {})
        short = Hold("t:hold:{c}", "six", 0.35, 0.2)
        assert await store.reserve(short, usage, [1.0, None]) is None  # 0.6 + 0.35 < 1.0
        assert await store.reserve(Hold("t:hold:{c}", "seven", 0.1, 60.0), usage, [1.0, None]) is None  # 0.95
        # 1.05 committed; once "six" expires, 0.7
        deadline = time.monotonic() + 5
        while await store.reserve(Hold("t:hold:{c}", "eight", 0.1, 60.0), usage, [1.0, None]) is not None:
            assert time.monotonic() < deadline, "an unsettled hold never expired"
            await asyncio.sleep(0.05)
    finally:
        await store.aclose()


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_concurrent_requests_cannot_overrun_a_small_budget(
    backend: str, serve: Callable[..., str], stub: Stub, router: Router, request: pytest.FixtureRequest
) -> None:
    extra: dict[str, Any] = {}
    if backend == "redis":
        extra["redis_url"] = request.getfixturevalue("redis_url")
    budget = 2 * COST  # covers two answers
    gateway = serve(profiles={"alpha": {"daily_budget_usd": budget}}, **extra)
    stub.modes["vision-pro"] = "slow"
    replies = concurrent_chats(gateway, KEY_A, 12)
    answered = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 429]
    assert len(answered) + len(refused) == 12, [r.text for r in replies]
    assert answered and refused
    assert {r.json()["error"]["code"] for r in refused} == {"budget_exceeded"}
    assert stub.calls == len(answered)  # a refused request never reached the upstream
    day = spent(gateway, KEY_A, len(answered))
    assert day["requests"] == len(answered)
    assert day["cost_usd"] == pytest.approx(len(answered) * COST)
    assert day["cost_usd"] <= budget + worst_case(router) + 1e-12


def test_an_abandoned_stream_is_charged_what_was_generated(serve: Callable[..., str], stub: Stub) -> None:
    gateway = serve(profiles={"alpha": {"daily_budget_usd": 1.0}})
    stub.modes["vision-pro"] = "stall"  # content, then silence: the client gives up before the usage chunk
    body = {"model": "vision-pro", "messages": MESSAGES, "stream": True}
    with httpx.stream(
        "POST", f"{gateway}/v1/chat/completions", json=body, headers=auth(KEY_A), timeout=30
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if "Paris" in line:
                break  # and hang up
    day = spent(gateway, KEY_A, 1)
    assert day["requests"] == 1
    assert day["completion_tokens"] > 0 and day["cost_usd"] > 0


def test_a_cascade_interrupted_midway_is_charged_for_the_stages_paid(
    serve: Callable[..., str], stub: Stub
) -> None:
    gateway = serve(profiles={"alpha": {"daily_budget_usd": 1.0, "tolerance": 0.5}})
    stub.modes["mid-cloud"] = "hang"  # the second rung never answers: the client gives up
    body = {"model": "ladder-cascade", "messages": MESSAGES}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=auth(KEY_A), timeout=3)
    day = spent(gateway, KEY_A, 1)
    assert stub.calls == 2  # small-local answered (and was paid), mid-cloud was asked
    assert day["requests"] == 1 and day["prompt_tokens"] == 10 and day["completion_tokens"] == 5
    assert day["cost_usd"] == pytest.approx((10 * 0.10 + 5 * 0.20) / 1e6)  # small-local's answer


def test_per_key_limits_on_requests_and_streams_in_flight(serve: Callable[..., str], stub: Stub) -> None:
    gateway = serve(profiles={"alpha": {"max_concurrent": 2}, "bravo": {"max_streams": 1}})
    stub.modes["vision-pro"] = "slow"
    replies = concurrent_chats(gateway, KEY_A, 5)
    codes = sorted(r.status_code for r in replies)
    assert codes.count(200) >= 1 and codes.count(429) >= 1 and codes.count(200) + codes.count(429) == 5
    assert stub.calls == codes.count(200) <= 4  # at most two at a time, and refused ones never reach it
    refused = next(r for r in replies if r.status_code == 429).json()["error"]
    assert refused["code"] == "concurrency_limit_exceeded" and "2 requests in flight" in refused["message"]

    stub.modes["mid-cloud"] = "stall"
    body = {"model": "mid-cloud", "messages": MESSAGES, "stream": True}
    with httpx.stream(
        "POST", f"{gateway}/v1/chat/completions", json=body, headers=auth(KEY_B), timeout=30
    ) as open_stream:
        assert open_stream.status_code == 200
        second = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=auth(KEY_B), timeout=30)
        assert second.status_code == 429 and second.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert chat(gateway, KEY_B, model="mid-cloud").status_code == 200  # a plain answer is no stream
    deadline = time.monotonic() + 10  # the stream's place is given back once the gateway sees it closed
    while True:
        with httpx.stream(
            "POST", f"{gateway}/v1/chat/completions", json=body, headers=auth(KEY_B), timeout=30
        ) as again:
            if again.status_code == 200 or time.monotonic() > deadline:
                break
        time.sleep(0.05)
    assert again.status_code == 200


# ---- Redis killed mid-run ----------------------------------------------------------------------------------


class RedisProcess:
    """A redis-server on a fixed port that a test can kill and start again."""

    def __init__(self, directory: Path) -> None:
        self.binary = redis_binary()
        self.port = free_port()
        self.directory = directory
        self.url = redis_url_at(self.port)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_redis(self.binary, self.port, self.directory)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture()
def killable_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.kill()


def test_redis_killed_mid_run_fails_closed(
    serve: Callable[..., str], stub: Stub, killable_redis: RedisProcess
) -> None:
    gateway = serve(profiles={"alpha": {"daily_budget_usd": 1.0}}, redis_url=killable_redis.url)
    assert chat(gateway, KEY_A).status_code == 200
    assert httpx.get(f"{gateway}/readyz").status_code == 200
    killable_redis.kill()
    refused = chat(gateway, KEY_A)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "state_unavailable"
    assert chat(gateway, KEY_B).status_code == 200  # a key without limits has nothing to enforce
    ready = httpx.get(f"{gateway}/readyz")
    assert ready.status_code == 503 and ready.json() == {"status": "unavailable"}
    assert stub.calls == 2


def test_redis_killed_mid_run_falls_back_locally_and_replays_the_spend(
    serve: Callable[..., str], stub: Stub, killable_redis: RedisProcess
) -> None:
    import redis

    budget = 3.5 * COST
    gateway = serve(
        profiles={"alpha": {"daily_budget_usd": budget}},
        redis_url=killable_redis.url,
        state_unavailable="local",
    )
    assert chat(gateway, KEY_A).status_code == 200
    spent(gateway, KEY_A, 1)
    killable_redis.kill()
    during = [chat(gateway, KEY_A).status_code for _ in range(4)]
    assert during == [200, 200, 200, 429]  # the local view started from the spend Redis last reported
    ready = httpx.get(f"{gateway}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "degraded": True}
    killable_redis.start()  # empty: what it had before the outage is gone, what came after must not be
    deadline = time.monotonic() + 10
    while httpx.get(f"{gateway}/readyz").json() != {"status": "ready"} and time.monotonic() < deadline:
        time.sleep(0.05)
    client = redis.Redis.from_url(killable_redis.url, decode_responses=True)
    days = [k for k in client.scan_iter("*usage:{alpha}:day:*")]
    assert len(days) == 1
    replayed = client.hgetall(days[0])
    assert float(replayed["requests"]) == 3
    assert float(replayed["cost_usd"]) == pytest.approx(3 * COST)
    assert all(client.pttl(k) > 0 for k in client.scan_iter("*"))


# ---- tenants apart -----------------------------------------------------------------------------------------


def test_a_reused_request_id_never_names_another_tenants_request(
    serve: Callable[..., str], stub: Stub, tmp_path: Path
) -> None:
    db = tmp_path / "traffic.db"
    gateway = serve(traffic_db=str(db), audit_prompts=True, feedback_per_minute=2)
    given = {"x-request-id": "shared-id-1"}
    a = httpx.post(
        f"{gateway}/v1/chat/completions",
        json={"model": "ladder", "messages": [{"role": "user", "content": "alpha's private question"}]},
        headers={**auth(KEY_A), **given},
    )
    b = httpx.post(
        f"{gateway}/v1/chat/completions",
        json={"model": "ladder", "messages": [{"role": "user", "content": "bravo's question"}]},
        headers={**auth(KEY_B), **given, "x-ladder-request-id": a.headers["x-ladder-request-id"]},
    )
    assert a.status_code == b.status_code == 200
    id_a, id_b = a.headers["x-ladder-request-id"], b.headers["x-ladder-request-id"]
    assert len({id_a, id_b, "shared-id-1"}) == 3

    def feedback(key: str, request_id: str) -> httpx.Response:
        return httpx.post(
            f"{gateway}/v1/feedback", json={"request_id": request_id, "thumbs": "down"}, headers=auth(key)
        )

    stolen = feedback(KEY_B, id_a)
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "request_not_found"
    assert feedback(KEY_A, id_a).status_code == 200
    again = feedback(KEY_A, id_a)
    assert again.status_code == 409 and again.json()["error"]["code"] == "feedback_exists"
    flood = feedback(KEY_A, id_a)
    assert flood.status_code == 429 and "feedback limit of 2 per minute" in flood.json()["error"]["message"]
    store = TrafficDB(db, create=False)
    try:
        stored_a, stored_b = store.decision(id_a), store.decision(id_b)
        assert stored_a is not None and stored_b is not None
        assert stored_a.prompt is not None and "alpha's private question" in stored_a.prompt
        assert stored_a.record.correlation_id == "shared-id-1" and stored_a.record.client == "alpha"
        assert store.decision("shared-id-1") is None
        assert [o.request_id for o in store.iter_outcomes()] == [id_a]
    finally:
        store.close()


def test_metrics_need_the_metrics_key_and_readyz_names_nothing(serve: Callable[..., str]) -> None:
    gateway = serve(metrics_key="sk-metrics-scraper-0123456789")
    assert httpx.get(f"{gateway}/metrics").status_code == 401
    assert httpx.get(f"{gateway}/metrics", headers=auth(KEY_A)).status_code == 401
    scraped = httpx.get(f"{gateway}/metrics", headers=auth("sk-metrics-scraper-0123456789"))
    assert scraped.status_code == 200 and "ladder_" in scraped.text
    assert httpx.get(f"{gateway}/readyz").json() == {"status": "ready"}


# ---- resources ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[" * 200 + "]" * 200, "more than 64 levels deep"),
        ("[" + "[]," * 400_000 + "[]]", "more than 100,000 JSON arrays, objects and elements"),
    ],
)
def test_hostile_json_is_refused_before_it_is_parsed(
    serve: Callable[..., str], stub: Stub, extra: str, message: str
) -> None:
    gateway = serve()
    body = '{"model": "ladder", "messages": [{"role": "user", "content": "hi"}], "metadata": ' + extra + "}"
    response = httpx.post(
        f"{gateway}/v1/chat/completions",
        content=body,
        headers={**auth(KEY_A), "content-type": "application/json"},
    )
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert stub.calls == 0


def test_keepalive_comments_cannot_hold_a_stream_past_its_deadline(
    serve: Callable[..., str], stub: Stub
) -> None:
    gateway = serve(stream_deadline_s=1.0)
    stub.modes["vision-pro"] = "keepalive"  # a first chunk, then a comment line every 0.1 s
    body = {"model": "vision-pro", "messages": MESSAGES, "stream": True}
    with httpx.stream(
        "POST", f"{gateway}/v1/chat/completions", json=body, headers=auth(KEY_A), timeout=8
    ) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    error = json.loads(events[-1][len("data: ") :])
    assert error["error"]["code"] == "upstream_timeout", events
    assert "stream's deadline" in error["error"]["message"]
