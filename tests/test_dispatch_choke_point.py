"""The dispatcher is the gateway's one way out: no other module can reach an upstream, and its guards
(locality, the request's deadline, the spend reservation) hold before any byte is sent."""

from __future__ import annotations

import ast
import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support.common import API_KEY, AUTH, UPSTREAM_KEY, UPSTREAM_KEY_ENV
from gateway_support.upstream import FakeUpstream
from pydantic import SecretStr

from ladder.bench.server_thread import ServerThread
from ladder.core.errors import UpstreamTimeoutError
from ladder.core.pool import ModelSpec
from ladder.core.pricing import Usage
from ladder.core.router import Router
from ladder.core.upstream import UpstreamClient
from ladder.gateway.app import create_app
from ladder.gateway.breaker import CircuitBreaker
from ladder.gateway.context import Purpose, RequestContext, Sensitivity
from ladder.gateway.dispatch import Dispatcher, LocalityError
from ladder.gateway.errors import RateLimitError
from ladder.gateway.keys import Client, KeyProfile, Limits, Period
from ladder.gateway.metrics import GatewayMetrics
from ladder.gateway.settings import load_settings
from ladder.gateway.spend import BudgetHook, Hold, NoSpend, SpendClaim, SpendGuard
from ladder.gateway.state import MemoryState

pytest_plugins = ["gateway_support.fixtures"]

GATEWAY = Path(__file__).resolve().parent.parent / "ladder" / "gateway"
# modules that can open a connection to an upstream: only the dispatcher may import them
UPSTREAM_MODULES = {"ladder.core.upstream", "ladder.core.upstream_http", "aiohttp", "openai", "anthropic"}
DISPATCHER = GATEWAY / "dispatch.py"
TYPE_ONLY = {"app.py": {"httpx"}}  # the transport seam's type, handed to the dispatcher


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_dispatcher_imports_an_upstream_client() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        if path == DISPATCHER:
            continue
        names = imported(ast.parse(path.read_text(encoding="utf-8")))
        allowed = TYPE_ONLY.get(path.name, set())
        bad = sorted(
            n
            for n in names
            if any(n == m or n.startswith(m + ".") for m in UPSTREAM_MODULES | {"httpx"}) and n not in allowed
        )
        if bad:
            offenders[str(path.relative_to(GATEWAY))] = bad
    assert offenders == {}
    assert "ladder.core.upstream.UpstreamClient" in imported(
        ast.parse(DISPATCHER.read_text(encoding="utf-8"))
    )


def test_no_module_reaches_into_the_dispatchers_client() -> None:
    """The client is private to the dispatcher: no other module reads ``._client`` off it, and the app
    hands its transport seam straight to ``Dispatcher.from_settings``."""
    for path in sorted(GATEWAY.rglob("*.py")):
        if path == DISPATCHER:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        reads = [
            ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "_client"
        ]
        assert [r for r in reads if "dispatcher" in r] == [], path
        assert "UpstreamClient" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}, path


def spec(name: str, locality: str) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": name,
            "upstream": {"base_url": f"http://upstream.test/{name}/v1", "model": name},
            "price": {"input_per_1m": 1.0, "output_per_1m": 2.0},
            "context_window": 1000,
            "locality": locality,
        }
    )


LOCAL, CLOUD = spec("local", "on-prem"), spec("cloud", "cloud")


class Recorder:
    """A spend guard that keeps every reservation and settlement; refuses when told to."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.reserved: list[SpendClaim] = []
        self.settled: list[tuple[str, float | None]] = []

    async def reserve(self, claim: SpendClaim) -> Hold:
        if self.refuse:
            raise RateLimitError("over budget", 60, code="budget_exceeded")
        self.reserved.append(claim)
        return Hold(claim, claim.worst_case_usd())

    async def settle(self, hold: Hold, cost_usd: float | None, usage: Usage | None = None) -> None:
        self.settled.append((hold.claim.model.name, cost_usd))


def dispatcher(seen: list[str], guard: Recorder | None = None, status: int = 200) -> Dispatcher:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path.split("/")[1])
        body = {
            "id": "x",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
        }
        return httpx.Response(status, content=json.dumps(body).encode())

    client = UpstreamClient(transport=httpx.MockTransport(answer), http="httpx")
    return Dispatcher(
        client,
        CircuitBreaker(5, 1.0),
        GatewayMetrics(),
        None,
        attempt_timeout_s=5,
        retries=0,
        backoff_s=0,
        deadline_s=5,
        spend=guard or NoSpend(),
    )


def context(sensitive: bool, deadline_in_s: float = 5.0) -> RequestContext:
    why = "pattern" if sensitive else None
    return RequestContext(Client("c"), "r1", Sensitivity(sensitive, why), time.monotonic() + deadline_in_s)


BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}


@pytest.mark.parametrize("purpose", list(Purpose))
def test_a_sensitive_request_never_leaves_for_a_cloud_model(purpose: Purpose) -> None:
    seen: list[str] = []
    d = dispatcher(seen)
    with pytest.raises(LocalityError, match="sensitive"):
        asyncio.run(d.send(context(True), [CLOUD], BODY, False, purpose))
    assert seen == [] and d.refused[purpose] == 1
    answered = asyncio.run(d.send(context(True), [CLOUD, LOCAL], BODY, False, purpose))
    assert answered.model.name == "local" and seen == ["local"]
    asyncio.run(d.send(context(False), [CLOUD, LOCAL], BODY, False, purpose))
    assert seen == ["local", "cloud"]


def test_the_requests_deadline_bounds_every_call() -> None:
    seen: list[str] = []
    with pytest.raises(UpstreamTimeoutError):
        asyncio.run(dispatcher(seen).send(context(False, deadline_in_s=-1), [CLOUD], BODY, False))
    assert seen == []


def test_every_attempt_is_reserved_then_settled_at_its_cost() -> None:
    seen: list[str] = []
    guard = Recorder()
    asyncio.run(dispatcher(seen, guard).send(context(False), [CLOUD], BODY, False, Purpose.SECOND_OPINION))
    [claim] = guard.reserved
    assert claim.purpose is Purpose.SECOND_OPINION and claim.ctx.request_id == "r1"
    assert claim.worst_case_usd() > 0
    assert guard.settled == [("cloud", pytest.approx((100 * 1.0 + 50 * 2.0) / 1e6))]

    failing = Recorder()
    with pytest.raises(Exception, match="failed"):
        asyncio.run(dispatcher(seen, failing, status=500).send(context(False), [CLOUD], BODY, False))
    assert failing.settled == [("cloud", 0.0)]  # an explicit server error: not billed


def test_a_refused_reservation_sends_nothing() -> None:
    seen: list[str] = []
    with pytest.raises(RateLimitError):
        asyncio.run(dispatcher(seen, Recorder(refuse=True)).send(context(False), [CLOUD], BODY, False))
    assert seen == []


@pytest.mark.parametrize("stream", [False, True])
def test_the_gateway_settles_each_answer_at_its_cost(
    test_pool: Path, router: Router, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """Through the real gateway: one reservation per answer, settled at the answer's cost (a stream's once
    it has ended)."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    guard = Recorder()
    settings = load_settings(None, pool=test_pool, api_keys=[API_KEY], retries=0)
    with ServerThread(create_app(settings, router=router, spend_guard=guard)) as server:
        body = {"model": "vision-pro", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=AUTH) as reply:
            reply.read()
        assert reply.status_code == 200
        deadline = time.monotonic() + 30
        while not guard.settled:
            assert time.monotonic() < deadline, "the answer was never settled"
            time.sleep(0.01)
    completion_tokens = 3 if stream else 5  # what the fake upstream reports
    assert [c.model.name for c in guard.reserved] == ["vision-pro"]
    assert guard.settled == [("vision-pro", pytest.approx((10 * 3.0 + completion_tokens * 15.0) / 1e6))]


def test_the_budget_hook_charges_every_paid_attempt_to_the_requests_reservation() -> None:
    """The gateway's hook: each paid attempt (answer, second opinion) is charged to the request's reservation,
    shadow calls are the operator's and never the client's, and an attempt for a request holding no
    reservation takes its own hold against the budget (refused once it is spent: nothing is sent)."""
    profile = KeyProfile(name="c", key=SecretStr("k" * 24), daily_budget_usd=0.0003)
    client = Client("c", profile)
    limits = Limits(MemoryState(), GatewayMetrics(), "t:")
    guard = SpendGuard(limits, hold_ttl_s=60, fail_closed=False)
    seen: list[str] = []
    d = dispatcher(seen)
    d.spend = BudgetHook(guard)
    answer = (100 * 1.0 + 50 * 2.0) / 1e6

    async def run() -> None:
        ctx = RequestContext(client, "r1", Sensitivity(False), time.monotonic() + 5)
        reservation = await guard.reserve(client, 0.001)
        ctx.reservations.append(reservation)
        await d.send(ctx, [CLOUD], BODY, False, Purpose.ANSWER)
        await d.send(ctx, [CLOUD], BODY, False, Purpose.SECOND_OPINION)
        await d.send(ctx, [CLOUD], BODY, False, Purpose.SHADOW_REFERENCE)
        await d.send(ctx.with_deadline_in(5), [CLOUD], BODY, False, Purpose.SHADOW_JUDGE)
        assert reservation.calls == 2 and reservation.cost_usd == pytest.approx(2 * answer)
        reservation.settle()
        await limits.background.drain()
        [day] = await limits.state.totals([limits.usage_key("c", Period.both(datetime.now(UTC))[0])])
        assert day["cost_usd"] == pytest.approx(2 * answer) and day["requests"] == 1
        assert len(seen) == 4
        later = RequestContext(client, "r2", Sensitivity(False), time.monotonic() + 5)  # no reservation
        with pytest.raises(RateLimitError, match="budget"):
            await d.send(later, [CLOUD], BODY, False, Purpose.ANSWER)
        assert len(seen) == 4

    asyncio.run(run())
