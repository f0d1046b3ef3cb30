"""Upstream faults: fallback in policy order, circuit breaker, deadlines, broken streams, disconnects."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from gateway_support.common import API_KEY, RunningGateway
from gateway_support.upstream import FakeUpstream

pytest_plugins = ["gateway_support.fixtures"]

USER = [{"role": "user", "content": "Summarise the plot of Hamlet."}]


def test_a_5xx_falls_back_and_says_so(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.set("vision-pro", "fail")
    raw = gateway.openai().chat.completions.with_raw_response.create(model="ladder-0", messages=USER)
    assert raw.headers["x-ladder-routed-model"] == "vision-pro"
    assert raw.parse().model == raw.headers["x-ladder-model"] == "mid-cloud"  # next by P(correct)
    assert raw.headers["x-ladder-fallback"] == "vision-pro (HTTP 500)"
    assert raw.parse().model_extra["ladder"]["fallback"][0]["model"] == "vision-pro"  # type: ignore[index]


def test_retries_with_backoff_before_falling_back(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(retries=2, breaker_failures=10)
    upstream.set("vision-pro", "fail")
    assert gateway.openai().chat.completions.create(model="ladder-0", messages=USER).model == "mid-cloud"
    assert [s.model for s in upstream.seen] == ["vision-pro"] * 3 + ["mid-cloud"]


def test_a_timeout_falls_back(start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream) -> None:
    gateway = start_gateway(attempt_timeout_s=0.3)
    upstream.set("vision-pro", "hang")
    raw = gateway.openai().chat.completions.with_raw_response.create(model="ladder-0", messages=USER)
    assert raw.parse().model == "mid-cloud"
    assert raw.headers["x-ladder-fallback"] == "vision-pro (timeout)"


def test_a_connection_error_falls_back(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = start_gateway()
    spec = gateway.app.state.gateway.pool.model("vision-pro")
    dead = spec.upstream.model_copy(update={"base_url": "http://127.0.0.1:9/v1"})  # the discard port: refused
    pool = gateway.app.state.gateway.pool
    patched = pool.model_copy(
        update={
            "models": tuple(
                m.model_copy(update={"upstream": dead}) if m.name == "vision-pro" else m for m in pool.models
            )
        }
    )
    monkeypatch.setattr(gateway.app.state.gateway, "pool", patched)
    raw = gateway.openai().chat.completions.with_raw_response.create(model="ladder-0", messages=USER)
    assert raw.parse().model == "mid-cloud"
    assert raw.headers["x-ladder-fallback"] == "vision-pro (ConnectError)"


def test_the_circuit_breaker_keeps_a_failing_upstream_out(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(breaker_failures=2, breaker_cooldown_s=60)
    upstream.set("vision-pro", "fail")
    client = gateway.openai()
    for _ in range(5):
        assert client.chat.completions.create(model="ladder-0", messages=USER).model == "mid-cloud"
    assert upstream.count("vision-pro") == 2
    raw = client.chat.completions.with_raw_response.create(model="ladder-0", messages=USER)
    assert raw.headers["x-ladder-fallback"] == "vision-pro (circuit open)"


def test_every_upstream_failing_is_502(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    for name in ("small-local", "mid-cloud", "vision-pro"):
        upstream.set(name, "fail")
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.openai().chat.completions.create(model="ladder", messages=USER)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_failure"  # type: ignore[index]


def test_every_upstream_hanging_is_504_within_the_deadline(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(attempt_timeout_s=5, deadline_s=0.5)
    for name in ("small-local", "mid-cloud", "vision-pro"):
        upstream.set(name, "hang")
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {API_KEY}"},
        json={"model": "ladder", "messages": USER},
        timeout=5,  # the client gives up long after the gateway's deadline; the gateway answers first
    )
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert upstream.count("vision-pro") == 1 and upstream.count("small-local") == 0


def test_a_stream_that_breaks_ends_with_an_error_event(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    upstream.set("small-local", "midstream")
    chunks = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        for chunk in gateway.openai().chat.completions.create(model="ladder-1", messages=USER, stream=True):
            chunks.append(chunk)
    assert chunks and chunks[0].model == "small-local"
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {API_KEY}"},
        json={"model": "ladder-1", "messages": USER, "stream": True},
    )
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1].startswith('data: {"error"') and "[DONE]" not in response.text


def test_a_stream_that_fails_before_its_first_chunk_falls_back(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    upstream.set("small-local", "fail")
    with gateway.openai().chat.completions.with_streaming_response.create(
        model="ladder-1", messages=USER, stream=True
    ) as response:
        assert response.headers["x-ladder-fallback"] == "small-local (HTTP 500)"
        chunks = list(response.parse())
    assert {c.model for c in chunks} == {"vision-pro"}  # the next by P(correct)


def test_client_disconnect_cancels_the_upstream_call(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(attempt_timeout_s=30, deadline_s=60)
    upstream.set("vision-pro", "hang")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"authorization": f"Bearer {API_KEY}"},
            json={"model": "ladder-0", "messages": USER},
            timeout=httpx.Timeout(10, read=0.5),
        )
    deadline = time.monotonic() + 10
    while "vision-pro" not in upstream.cancelled and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.cancelled == ["vision-pro"]


def test_one_upstream_failing_and_one_hanging_every_request_is_answered_in_time(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    """The fault test: 5xx on one model, a hang on another; 40 concurrent clients all get a healthy answer."""
    deadline_s = 2.0
    gateway = start_gateway(attempt_timeout_s=0.5, deadline_s=deadline_s, retries=1, breaker_failures=3)
    upstream.set("vision-pro", "fail")
    upstream.set("mid-cloud", "hang")
    http = httpx.Client(
        base_url=gateway.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=deadline_s + 5.0
    )

    def ask(i: int) -> tuple[int, str, float]:
        started = time.monotonic()
        model = "ladder-0" if i % 2 else "ladder-0.2"  # first choices: vision-pro and mid-cloud
        response = http.post("/v1/chat/completions", json={"model": model, "messages": USER})
        return response.status_code, response.json().get("model", ""), time.monotonic() - started

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(40)))
    assert {status for status, _, _ in results} == {200}
    assert {model for _, model, _ in results} == {"small-local"}
    assert max(elapsed for _, _, elapsed in results) < deadline_s + 1.0
