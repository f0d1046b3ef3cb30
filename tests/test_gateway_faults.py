"""Upstream faults: fallback in policy order, breaker, deadlines, refusals, bad replies, disconnects."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from gateway_support.common import AUTH, RunningGateway
from gateway_support.upstream import MASKED_KEY, FakeUpstream

from ladder.gateway.settings import Settings

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
    gateway = start_gateway(attempt_timeout_s=5, deadline_s=0.9)
    for name in ("small-local", "mid-cloud", "vision-pro"):
        upstream.set(name, "hang")
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers=AUTH,
        json={"model": "ladder", "messages": USER},
        timeout=5,  # the client gives up long after the gateway's deadline; the gateway answers first
    )
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert response.json()["error"]["message"].count("timeout") == 3  # each model got a third of it
    assert [upstream.count(name) for name in ("small-local", "mid-cloud", "vision-pro")] == [1, 1, 1]


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
        headers=AUTH,
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
            headers=AUTH,
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
        base_url=gateway.url, headers=AUTH, timeout=deadline_s + 5.0
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


def defaults(*names: str) -> dict[str, object]:
    return {name: Settings.model_fields[name].default for name in names}


def test_a_hanging_upstream_falls_back_within_the_deadline_with_default_settings(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    """Only the deadline is scaled down: the first-byte limit, retries and attempt timeout are defaults."""
    deadline_s = 1.5
    settings = defaults("attempt_timeout_s", "retries", "first_byte_timeout_s")
    gateway = start_gateway(deadline_s=deadline_s, **settings)
    upstream.set("vision-pro", "hang")
    started = time.monotonic()
    raw = gateway.openai().chat.completions.with_raw_response.create(model="ladder-0", messages=USER)
    assert raw.parse().model == "mid-cloud"
    assert raw.headers["x-ladder-fallback"] == "vision-pro (timeout)"
    assert time.monotonic() - started < deadline_s
    assert upstream.count("vision-pro") == 1  # a timed-out POST may have reached it: never resent


def test_a_timeout_is_never_retried_on_the_same_model(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(retries=3, first_byte_timeout_s=0.3, breaker_failures=10)
    upstream.set("vision-pro", "hang")
    assert gateway.openai().chat.completions.create(model="ladder-0", messages=USER).model == "mid-cloud"
    assert upstream.count("vision-pro") == 1


@pytest.mark.parametrize("status", ["401", "403", "404", "429"])
def test_refusals_of_the_key_or_model_fall_back_and_are_never_relayed(
    gateway: RunningGateway, upstream: FakeUpstream, status: str
) -> None:
    upstream.set("vision-pro", status)
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers=AUTH,
        json={"model": "ladder-0", "messages": USER},
    )
    assert response.status_code == 200
    assert response.json()["model"] == "mid-cloud"
    assert response.headers["x-ladder-fallback"] == f"vision-pro (HTTP {status})"
    assert MASKED_KEY not in response.text and "Incorrect API key" not in response.text


def test_every_upstream_refusing_is_a_clean_502_without_their_bodies(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    for name, status in (("small-local", "401"), ("mid-cloud", "403"), ("vision-pro", "404")):
        upstream.set(name, status)
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers=AUTH,
        json={"model": "ladder-0", "messages": USER},
    )
    assert response.status_code == 502
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert MASKED_KEY not in response.text and "Incorrect API key" not in response.text


@pytest.mark.parametrize("status", ["429", "503"])
def test_retry_after_keeps_the_upstream_out_for_that_long(
    gateway: RunningGateway, upstream: FakeUpstream, status: str
) -> None:
    upstream.set("vision-pro", status, retry_after="30")
    client = gateway.openai()
    for _ in range(3):
        assert client.chat.completions.create(model="ladder-0", messages=USER).model == "mid-cloud"
    assert upstream.count("vision-pro") == 1  # well under the 5 failures that open its circuit
    breaker = gateway.app.state.gateway.dispatcher.breaker
    assert breaker.held("vision-pro")
    raw = client.chat.completions.with_raw_response.create(model="ladder-0", messages=USER)
    assert raw.headers["x-ladder-fallback"] == "vision-pro (circuit open)"


@pytest.mark.parametrize("mode", ["malformed", "badshape"])
def test_a_malformed_reply_falls_back_and_is_never_a_500(
    gateway: RunningGateway, upstream: FakeUpstream, mode: str
) -> None:
    upstream.set("vision-pro", mode)
    raw = gateway.openai().chat.completions.with_raw_response.create(model="ladder-0", messages=USER)
    assert raw.parse().model == "mid-cloud"
    assert raw.headers["x-ladder-fallback"] == "vision-pro (bad reply)"
    for name in ("small-local", "mid-cloud"):
        upstream.set(name, mode)
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.openai().chat.completions.create(model="ladder-0", messages=USER)
    assert caught.value.status_code == 502
