"""Latency budgets in the gateway: a slow upstream on loopback is avoided under a budget, used without one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gateway_support.common import AUTH, UPSTREAM_KEY_ENV, RunningGateway
from gateway_support.pool import shared_pool
from gateway_support.upstream import FakeUpstream

from ladder.bench.server_thread import ServerThread

pytest_plugins = ["gateway_support.fixtures"]

QUESTION: list[Any] = [{"role": "user", "content": "Summarise the plot of Hamlet."}]


@pytest.fixture(scope="module")
def test_pool(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: tuple[FakeUpstream, ServerThread]
) -> Path:
    """The shared test pool, with the pool file stating that vision-pro takes 2 s to its first token."""
    slow = {"vision-pro": {"latency": {"ttft_ms": 2000, "tokens_per_s": 50}}}
    return shared_pool(tmp_path_factory.mktemp("latency"), upstream_server[1].url, UPSTREAM_KEY_ENV, slow)


def ask(gateway: RunningGateway, **extra: Any) -> tuple[str, dict[str, Any]]:
    """The model that answered and the body's ``ladder`` object."""
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="ladder",
        messages=QUESTION,
        **extra,
    )
    completion = raw.parse()
    return raw.headers["x-ladder-model"], completion.model_extra["ladder"]  # type: ignore[index]


def test_the_pool_files_latency_keeps_a_slow_model_out_of_a_tight_budget(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    upstream.set("vision-pro", "slow", delay_s=0.05)
    assert ask(gateway)[0] == "vision-pro"  # the router's choice when time does not matter
    model, ladder = ask(gateway, extra_body={"max_latency_ms": 1000})
    assert model == "mid-cloud"
    assert "exceeds the request's budget of 1000 ms" in ladder["excluded"]["vision-pro"]
    assert "max_latency_ms" not in upstream.seen[-1].body  # never forwarded upstream
    model, _ = ask(gateway, extra_headers={"x-ladder-max-latency-ms": "1000"})
    assert model == "mid-cloud"
    assert ask(gateway, extra_body={"max_latency_ms": 60_000})[0] == "vision-pro"


def test_latency_learned_live_keeps_a_slow_model_out_of_a_tight_budget(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    """mid-cloud has no prior: it is kept under a budget until the gateway has measured it."""
    pair = {"models": ["small-local", "mid-cloud"]}
    upstream.set("mid-cloud", "slow", delay_s=0.5)
    assert ask(gateway, extra_body={**pair, "max_latency_ms": 300})[0] == "mid-cloud"  # not yet measured
    client = gateway.openai()
    stream = client.chat.completions.create(
        model="ladder",
        messages=QUESTION,
        stream=True,
        extra_body=pair,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    ask(gateway, extra_body=pair)
    model, ladder = ask(gateway, extra_body={**pair, "max_latency_ms": 300})
    assert model == "small-local"
    assert "budget of 300 ms" in ladder["excluded"]["mid-cloud"]
    assert ask(gateway, extra_body=pair)[0] == "mid-cloud"  # without a budget the router's choice stands
    listed = {m.id: m.model_extra["ladder"] for m in client.models.list().data}  # type: ignore[index]
    assert listed["mid-cloud"]["latency"]["ttft_ms"] >= 450  # measured: the upstream waits 500 ms
    assert listed["vision-pro"]["latency"]["ttft_ms"] == 2000  # the pool file's, never measured here
    assert listed["small-local"]["latency"]["expected_ms"] < 300  # measured once, fast
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'ladder_expected_ttft_seconds{model="mid-cloud"}' in metrics


def test_the_route_endpoint_explains_a_latency_exclusion(gateway: RunningGateway) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/route",
        json={"prompt": "Summarise Hamlet.", "max_latency_ms": 500},
        headers=AUTH,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["model"] != "vision-pro"
    assert "expected latency" in body["excluded"]["vision-pro"]


@pytest.mark.parametrize("value", ["soon", "-5", "0", "nan", "inf"])
def test_a_bad_budget_header_is_a_400(start_gateway: Callable[..., RunningGateway], value: str) -> None:
    gateway = start_gateway()
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().chat.completions.create(
            model="ladder",
            messages=QUESTION,
            extra_headers={"x-ladder-max-latency-ms": value},
        )
    assert "x-ladder-max-latency-ms" in str(caught.value)


def test_a_budget_no_model_can_meet_is_a_400_naming_each_reason(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().chat.completions.create(
            model="vision-pro",
            messages=QUESTION,
            extra_body={"max_latency_ms": 10},
        )
    assert "expected latency" in str(caught.value)
    assert upstream.count("vision-pro") == 0
