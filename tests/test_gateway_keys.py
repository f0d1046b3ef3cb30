"""Client key profiles through the real gateway: default tolerance, allowed models, rate limits, budgets,
spend per key in ``/metrics`` and ``GET /v1/usage``, and the strict settings that declare them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from gateway_support.common import API_KEY, RunningGateway
from gateway_support.upstream import FakeUpstream

from ladder.core.errors import ConfigError
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.keys import key_name
from ladder.gateway.settings import load_settings

pytest_plugins = ["gateway_support.fixtures"]

CHAT_KEY = "sk-chat-app-key-0123456789"
AGENT_KEY = "sk-coding-agent-key-0123456789"
ADMIN_KEY = "sk-platform-admin-key-0123456789"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
# The fake upstream reports 10 prompt and 5 completion tokens: vision-pro ($3 / $15 per 1M) costs $0.000105.
VISION_COST = (10 * 3.0 + 5 * 15.0) / 1e6


def profiles(**extra: dict[str, Any]) -> list[dict[str, Any]]:
    chat = {"name": "chat-app", "key": CHAT_KEY, "tolerance": 0.2, **extra.get("chat", {})}
    agent = {"name": "coding-agent", "key": AGENT_KEY, "tolerance": 0.05, **extra.get("agent", {})}
    admin = {"name": "platform", "key": ADMIN_KEY, "admin": True}
    return [chat, agent, admin]


def client(gateway: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def test_each_key_routes_with_its_own_default_tolerance(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(key_profiles=profiles())
    chat = client(gateway, CHAT_KEY).chat.completions.create(model="ladder", messages=MESSAGES)
    agent = client(gateway, AGENT_KEY).chat.completions.create(model="ladder", messages=MESSAGES)
    assert chat.model == "mid-cloud"  # 0.73 is within 0.2 of 0.88 and cheaper
    assert agent.model == "vision-pro"
    assert chat.model_extra["ladder"]["tolerance"] == 0.2  # type: ignore[index]
    assert chat.model_extra["ladder"]["client"] == "chat-app"  # type: ignore[index]
    explicit = client(gateway, CHAT_KEY).chat.completions.create(model="ladder-0", messages=MESSAGES)
    assert explicit.model == "vision-pro"  # the request's own tolerance wins
    plain = gateway.openai().chat.completions.create(model="ladder", messages=MESSAGES)
    assert plain.model == "vision-pro"  # LADDER_API_KEYS keys still work, with the pool's tolerance
    assert plain.model_extra["ladder"]["client"] == key_name(API_KEY)  # type: ignore[index]


def test_a_key_reaches_only_its_allowed_models(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    allowed = {"models": ["small-local", "mid-cloud"]}
    gateway = start_gateway(key_profiles=profiles(chat=allowed))
    chat = client(gateway, CHAT_KEY)
    best = chat.chat.completions.create(model="ladder-0", messages=MESSAGES)
    assert best.model == "mid-cloud"
    excluded = best.model_extra["ladder"]["excluded"]  # type: ignore[index]
    assert excluded == {"vision-pro": "not allowed for client key 'chat-app'"}
    with pytest.raises(openai.NotFoundError) as refused:
        chat.chat.completions.create(model="vision-pro", messages=MESSAGES)
    assert refused.value.status_code == 404
    assert refused.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert "'vision-pro' is not available to client key 'chat-app'" in refused.value.message
    image = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    with pytest.raises(openai.BadRequestError) as no_model:
        chat.chat.completions.create(model="ladder", messages=[{"role": "user", "content": image}])
    assert no_model.value.body["code"] == "no_eligible_model"  # type: ignore[index]
    assert "vision-pro: not allowed for client key 'chat-app'" in no_model.value.message
    assert {s.model for s in upstream.seen} == {"mid-cloud"}


def test_over_the_rate_limit_is_a_429_with_retry_after(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(key_profiles=profiles(chat={"requests_per_minute": 3}))
    chat = client(gateway, CHAT_KEY)
    for _ in range(3):
        chat.chat.completions.create(model="ladder", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as limited:
        chat.chat.completions.with_raw_response.create(model="ladder", messages=MESSAGES)
    error = limited.value
    assert error.status_code == 429 and 1 <= int(error.response.headers["retry-after"]) <= 20
    assert error.body == {  # the OpenAI envelope
        "message": error.body["message"],  # type: ignore[index]
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert "'chat-app' is over its rate limit of 3 requests per minute" in error.message
    assert upstream.count("mid-cloud") == 3
    agent = client(gateway, AGENT_KEY).chat.completions.create(model="ladder", messages=MESSAGES)
    assert agent.model == "vision-pro"  # another key has its own allowance
    with httpx.Client(base_url=gateway.url) as http:
        metrics = http.get("/metrics").text
        usage = http.get("/v1/usage", headers={"authorization": f"Bearer {CHAT_KEY}"})
    assert 'ladder_client_rejections_total{client="chat-app",reason="rate_limit"} 1.0' in metrics
    assert usage.status_code == 200  # reading one's usage is never rate limited


def test_a_spent_budget_refuses_the_next_request_on_both_apis(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    budget = {"daily_budget_usd": VISION_COST * 1.5, "monthly_budget_usd": 10.0}
    gateway = start_gateway(key_profiles=profiles(agent=budget))
    agent = client(gateway, AGENT_KEY)
    agent.chat.completions.create(model="ladder", messages=MESSAGES)  # spent 0.000105 of 0.0001575
    with agent.chat.completions.create(model="ladder", messages=MESSAGES, stream=True) as stream:
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "vision-pro says hi"
    with pytest.raises(openai.RateLimitError) as refused:
        agent.chat.completions.with_raw_response.create(model="ladder", messages=MESSAGES)
    error = refused.value
    assert error.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert "'coding-agent' has spent $0.000180 of its daily budget of $0.0001575" in error.message
    assert 1 <= int(error.response.headers["retry-after"]) <= 86_400
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=AGENT_KEY, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refused_messages:
        claude.messages.create(model="ladder", max_tokens=16, messages=MESSAGES)  # type: ignore[arg-type]
    assert refused_messages.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert upstream.count("vision-pro") == 2
    chat = client(gateway, CHAT_KEY).chat.completions.create(model="ladder", messages=MESSAGES)
    assert chat.model == "mid-cloud"  # other keys are not affected

    headers = {"authorization": f"Bearer {AGENT_KEY}"}
    with httpx.Client(base_url=gateway.url, headers=headers) as http:
        route = http.post("/v1/route", json={"model": "ladder", "messages": MESSAGES})
        own = http.get("/v1/usage").json()
        metrics = http.get("/metrics").text
    assert route.status_code == 200  # a decision spends nothing
    assert own["client"] == "coding-agent" and not own["admin"] and own["state"] == "memory"
    (entry,) = own["data"]
    day = entry["day"]
    # the stream's usage (10 + 3 tokens) is what the fake reports when asked: $0.000075
    assert day["requests"] == 2 and day["prompt_tokens"] == 20 and day["completion_tokens"] == 8
    assert day["cost_usd"] == pytest.approx(VISION_COST + (10 * 3.0 + 3 * 15.0) / 1e6)
    assert day["budget_usd"] == budget["daily_budget_usd"] and day["remaining_usd"] == 0
    assert entry["month"]["budget_usd"] == 10.0 and entry["month"]["remaining_usd"] > 9.99
    spend = [
        ln for ln in metrics.splitlines() if ln.startswith('ladder_client_cost_usd_total{client="coding')
    ]
    assert spend and float(spend[0].split()[-1]) == pytest.approx(day["cost_usd"])
    assert 'ladder_client_rejections_total{client="coding-agent",reason="day_budget"} 2.0' in metrics
    for secret in (AGENT_KEY, CHAT_KEY, ADMIN_KEY, API_KEY):
        assert secret not in metrics and secret not in json.dumps(own)


def test_usage_is_private_unless_the_key_is_an_admin(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(key_profiles=profiles())
    client(gateway, CHAT_KEY).chat.completions.create(model="ladder", messages=MESSAGES)
    with httpx.Client(base_url=gateway.url) as http:
        mine = http.get("/v1/usage", headers={"authorization": f"Bearer {CHAT_KEY}"}).json()
        everyone = http.get("/v1/usage", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
        nobody = http.get("/v1/usage")
    assert [e["client"] for e in mine["data"]] == ["chat-app"]
    assert mine["data"][0]["day"]["requests"] == 1
    assert everyone["admin"] is True
    names = [e["client"] for e in everyone["data"]]
    assert names == sorted(["chat-app", "coding-agent", "platform", key_name(API_KEY)])
    assert next(e for e in everyone["data"] if e["client"] == "chat-app")["day"]["requests"] == 1
    assert nobody.status_code == 401 and nobody.json()["error"]["type"] == "authentication_error"


def test_profiles_come_from_the_strict_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LADDER_API_KEYS", raising=False)
    monkeypatch.setenv("LADDER_KEY_PROFILES", json.dumps(profiles(chat={"daily_budget_usd": 5})))
    settings = load_settings(None)
    assert [p.name for p in settings.key_profiles] == ["chat-app", "coding-agent", "platform"]
    assert settings.key_profiles[0].daily_budget_usd == 5 and not settings.api_keys
    assert CHAT_KEY not in repr(settings)
    monkeypatch.delenv("LADDER_KEY_PROFILES")

    path = tmp_path / "settings.yaml"
    path.write_text(
        "key_profiles:\n  - name: chat-app\n    key: sk-chat-app-key-0123456789\n    budget: 5\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"settings.yaml:4: key_profiles.0.budget: unknown key"):
        load_settings(path)
    short = [{"name": "a", "key": "changeme"}]
    with pytest.raises(ConfigError, match="placeholder or short API key"):
        load_settings(None, key_profiles=short)
    twice = [{"name": "a", "key": CHAT_KEY}, {"name": "a", "key": AGENT_KEY}]
    with pytest.raises(ConfigError, match="its own name and its own key"):
        load_settings(None, key_profiles=twice)
    with pytest.raises(ConfigError, match="requests_per_minute"):
        load_settings(None, key_profiles=[{"name": "a", "key": CHAT_KEY, "requests_per_minute": 0}])
    with pytest.raises(ConfigError, match="name"):
        load_settings(None, key_profiles=[{"name": "has space", "key": CHAT_KEY}])


def test_a_profile_naming_a_model_outside_the_pool_stops_the_gateway(test_pool: Path, router: Router) -> None:
    wrong = [{"name": "a", "key": CHAT_KEY, "models": ["gpt-9"]}]
    settings = load_settings(None, pool=test_pool, key_profiles=wrong)
    with pytest.raises(ConfigError, match=r"key_profiles: a: models \['gpt-9'\] are not in the pool"):
        create_app(settings, router=router)
