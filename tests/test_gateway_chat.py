"""Chat completions through the real gateway with the official ``openai`` client: plain, streaming, tools."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from gateway_support.common import API_KEY, AUTH, UPSTREAM_KEY, RunningGateway, streamed_lines
from gateway_support.pool import NAMES
from gateway_support.tools import WEATHER
from gateway_support.upstream import FakeUpstream

pytest_plugins = ["gateway_support.fixtures"]

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def test_plain_completion_reports_the_answering_model_and_the_decision(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(model="ladder", messages=MESSAGES)
    completion = raw.parse()
    headers = raw.headers
    assert completion.model == headers["x-ladder-model"] == headers["x-ladder-routed-model"]
    assert completion.choices[0].message.content == f"{completion.model} says hi"
    assert set(dict(pair.split("=") for pair in headers["x-ladder-p-correct"].split(","))) == set(NAMES)
    assert float(headers["x-ladder-threshold"]) <= 1
    ladder = completion.model_extra["ladder"]  # type: ignore[index]
    assert ladder["model"] == completion.model
    assert set(ladder["p_correct"]) == set(NAMES)
    assert ladder["cost_usd"] > 0 and ladder["baseline_model"] == "vision-pro"
    assert upstream.seen[-1].body["model"] == f"upstream-{completion.model}"


def test_tolerance_in_the_model_name_routes_cheaper(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    client = gateway.openai()
    strict = client.chat.completions.create(model="ladder-0", messages=MESSAGES)
    loose = client.chat.completions.create(model="ladder-1", messages=MESSAGES)
    assert strict.model == "vision-pro"  # highest P(correct)
    assert loose.model == "small-local"  # the cheapest, every model being within tolerance 1


def test_extensions_at_the_top_level_and_in_extra_body_are_not_forwarded(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    client = gateway.openai()
    first = client.chat.completions.create(
        model="ladder",
        messages=MESSAGES,
        extra_body={"tolerance": 1.0, "models": ["mid-cloud", "vision-pro"]},
    )
    assert first.model == "mid-cloud"
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers=AUTH,
        json={"model": "ladder", "messages": MESSAGES, "extra_body": {"tolerance": 1.0, "seed": 7}},
    )
    assert response.json()["model"] == "small-local"
    for seen in upstream.seen:
        assert "tolerance" not in seen.body and "models" not in seen.body and "extra_body" not in seen.body
    assert upstream.seen[-1].body["seed"] == 7


def test_every_client_field_is_forwarded(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    gateway.openai().chat.completions.create(
        model="mid-cloud",
        messages=MESSAGES,
        temperature=0.3,
        max_tokens=17,
        top_p=0.9,
        stop=["\n\n"],
        response_format={"type": "json_object"},
        user="u-1",
        extra_body={"custom_field": {"a": 1}},
    )
    body = upstream.seen[-1].body
    assert body["temperature"] == 0.3 and body["max_tokens"] == 17 and body["top_p"] == 0.9
    assert body["stop"] == ["\n\n"] and body["response_format"] == {"type": "json_object"}
    assert body["user"] == "u-1" and body["custom_field"] == {"a": 1}
    assert body["messages"] == MESSAGES


def test_a_pool_model_name_pins_it(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(model="small-local", messages=MESSAGES)
    assert raw.parse().model == "small-local"
    assert raw.headers["x-ladder-routed-model"] == "small-local"


def test_streaming_relays_chunks_with_the_answering_model(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    client = gateway.openai()
    with client.chat.completions.with_streaming_response.create(
        model="ladder-1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as response:
        assert response.headers["x-ladder-model"] == "small-local"
        assert response.headers["x-ladder-p-correct"]
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "small-local says hi"
    assert {c.model for c in chunks} == {"small-local"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].model_extra["ladder"]["cost_usd"] > 0  # type: ignore[index]


def test_streaming_without_usage_does_not_surprise_the_client(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    chunks = list(gateway.openai().chat.completions.create(model="ladder-1", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert upstream.seen[-1].body["stream_options"] == {"include_usage": True}  # asked upstream for costs


def test_a_stream_whose_upstream_reports_no_usage_is_still_costed(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    upstream.set("small-local", "no-usage")  # as llama.cpp's server does
    body = {"model": "ladder-1", "messages": MESSAGES, "stream": True}
    lines = streamed_lines(f"{gateway.url}/v1/chat/completions", body)
    comments = [json.loads(line.removeprefix(": ladder ")) for line in lines if line.startswith(": ladder ")]
    assert len(comments) == 1 and comments[0]["usage_estimated"] is True
    assert comments[0]["cost_usd"] > 0 and comments[0]["baseline_cost_usd"] > comments[0]["cost_usd"]
    assert lines[-1] == "data: [DONE]"


def test_tools_plain_and_streaming(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    tools = [WEATHER]
    client = gateway.openai()
    completion = client.chat.completions.create(
        model="ladder-1", messages=MESSAGES, tools=tools, tool_choice="auto"
    )
    assert completion.model == "mid-cloud"  # the cheapest tool-capable model
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and call.function.arguments == '{"city": "Paris"}'
    assert upstream.seen[-1].body["tools"] == tools and upstream.seen[-1].body["tool_choice"] == "auto"
    chunks = list(
        client.chat.completions.create(model="ladder-1", messages=MESSAGES, tools=tools, stream=True)
    )
    arguments = "".join(
        tc.function.arguments or ""
        for c in chunks
        for tc in (c.choices[0].delta.tool_calls or [])
        if tc.function is not None
    )
    assert arguments == '{"city": "Paris"}'


def test_upstream_key_comes_from_the_environment_and_never_leaks(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(model="ladder", messages=MESSAGES)
    assert upstream.seen[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert API_KEY not in upstream.seen[-1].headers.get("authorization", "")
    assert UPSTREAM_KEY not in raw.http_response.text
    assert all(UPSTREAM_KEY not in v for v in raw.headers.values())


def test_route_endpoint_decides_without_calling_upstream(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/route",
        headers=AUTH,
        json={"prompt": "Prove that there are infinitely many primes.", "tolerance": 1.0},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "small-local"
    assert {c["name"] for c in body["candidates"]} == set(NAMES)
    assert body["baseline_model"] == "vision-pro" and body["expected_savings_usd"] > 0
    assert upstream.seen == []


def test_models_lists_the_policy_and_the_pool(gateway: RunningGateway) -> None:
    ids = [m.id for m in gateway.openai().models.list()]
    assert ids == ["ladder", *NAMES]


def test_health_readiness_and_metrics(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    gateway.openai().chat.completions.create(model="ladder-1", messages=MESSAGES)
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'ladder_requests_total{endpoint="chat",model="small-local"} 1.0' in metrics
    assert 'ladder_tokens_total{kind="completion",model="small-local"} 5.0' in metrics
    assert "ladder_savings_usd_total" in metrics and "ladder_routing_latency_seconds_bucket" in metrics


def test_playground_root_answers_html(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.url}/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]


@pytest.mark.parametrize("header", [{}, {"authorization": "Bearer wrong-key-0123456789"}])
def test_clients_need_a_valid_key(gateway: RunningGateway, header: dict[str, str]) -> None:
    response = httpx.post(f"{gateway.url}/v1/chat/completions", headers=header, json={"model": "ladder"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="nope-nope-nope", max_retries=0).models.list()
