"""Data sovereignty: a sensitive request never reaches a cloud upstream, counted at the upstream itself."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gateway_support.common import API_KEY, AUTH, UPSTREAM_KEY, UPSTREAM_KEY_ENV, RunningGateway
from gateway_support.conversations import (
    anthropic_conversations,
    chat_conversations,
    string_paths,
    with_value,
)
from gateway_support.pool import shared_pool
from gateway_support.upstream import FakeUpstream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladder.bench.server_thread import ServerThread
from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.context import RequestContext, Sensitivity
from ladder.gateway.dispatch import allowed
from ladder.gateway.keys import Client
from ladder.gateway.settings import load_settings

pytest_plugins = ["gateway_support.fixtures"]

SECRET = "Project Falcon"
PATTERN = r"(?i)project\s+falcon"
ON_PREM = {"small-local"}


@pytest.fixture(scope="module")
def test_pool(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: tuple[FakeUpstream, ServerThread]
) -> Path:
    """The shared test pool, with the on-prem model able to use tools (so tool conversations can stay)."""
    tools = {"small-local": {"capabilities": ["text", "tools", "json"]}}
    return shared_pool(tmp_path_factory.mktemp("sovereign"), upstream_server[1].url, UPSTREAM_KEY_ENV, tools)


@pytest.fixture()
def sovereign(start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return start_gateway(sensitive_patterns=[PATTERN])


@pytest.fixture()
def http(sovereign: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sovereign.url, headers=AUTH, timeout=30
    ) as client:
        yield client


def clouds(upstream: FakeUpstream) -> list[str]:
    """The upstream calls that went to a non-on-prem model."""
    return [s.model for s in upstream.seen if s.model not in ON_PREM]


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST and read the whole answer (streams included)."""
    with http.stream("POST", path, json=body) as response:
        response.read()
    return response


def turns(first_user: str) -> list[dict[str, Any]]:
    """Seven turns: the first user turn is the fourth-last one, outside the routed text."""
    return [
        {"role": "user", "content": first_user},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "And of Spain?"},
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_the_fourth_last_user_turn_counts(
    sovereign: RunningGateway, upstream: FakeUpstream, http: httpx.Client, stream: bool
) -> None:
    """The reported case: only the routed text (system + last three user turns) used to be checked."""
    plain = post(
        http, "/v1/chat/completions", {"model": "ladder-0", "messages": turns("Hello"), "stream": stream}
    )
    assert plain.status_code == 200 and plain.headers["x-ladder-model"] == "vision-pro"  # the cloud is best
    upstream.seen.clear()
    body = {"model": "ladder-0", "messages": turns(f"Notes on {SECRET}: keep them here"), "stream": stream}
    response = post(http, "/v1/chat/completions", body)
    assert response.status_code == 200 and response.headers["x-ladder-model"] == "small-local"
    assert [s.model for s in upstream.seen] == ["small-local"]


SECRET_CALL = [
    {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": f'{{"q": "{SECRET}"}}'}}
]
CHAT_PLACES: dict[str, dict[str, Any]] = {
    "system": {"messages": [{"role": "system", "content": SECRET}, {"role": "user", "content": "hi"}]},
    "assistant": {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": SECRET},
            {"role": "user", "content": "go on"},
        ]
    },
    "tool call arguments": {
        "messages": [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": None, "tool_calls": SECRET_CALL},
            {"role": "tool", "tool_call_id": "c1", "content": "nothing"},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    },
    "tool result": {
        "messages": [
            {"role": "user", "content": "look it up"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{**SECRET_CALL[0], "function": {"name": "x"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": f"record: {SECRET}"},
            {"role": "user", "content": "thanks"},
        ],
    },
    "a later text part": {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": SECRET}]}
        ]
    },
    "another field": {"messages": [{"role": "user", "content": "hi"}], "user": SECRET},
    "extra_body": {"messages": [{"role": "user", "content": "hi"}], "extra_body": {"user": SECRET}},
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("place", list(CHAT_PLACES))
def test_every_part_of_a_chat_request_is_checked(
    sovereign: RunningGateway, upstream: FakeUpstream, http: httpx.Client, place: str, stream: bool
) -> None:
    response = post(
        http, "/v1/chat/completions", {"model": "ladder-0", "stream": stream, **CHAT_PLACES[place]}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-ladder-model"] == "small-local"
    assert upstream.count("small-local") == 1 and clouds(upstream) == []


ANTHROPIC_PLACES: dict[str, dict[str, Any]] = {
    "system string": {"system": SECRET, "messages": [{"role": "user", "content": "hi"}]},
    "system blocks": {
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": SECRET}],
        "messages": [{"role": "user", "content": "hi"}],
    },
    "tool_use input": {
        "messages": [
            {"role": "user", "content": "look it up"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": SECRET}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "none"}]},
        ]
    },
    "tool_result content": {
        "messages": [
            {"role": "user", "content": "look it up"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": SECRET}],
                    }
                ],
            },
        ]
    },
    "document text": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": SECRET},
                    },
                    {"type": "text", "text": "Summarise the document."},
                ],
            }
        ]
    },
    "metadata": {"metadata": {"user_id": SECRET}, "messages": [{"role": "user", "content": "hi"}]},
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("place", list(ANTHROPIC_PLACES))
def test_every_part_of_a_messages_request_is_checked(
    sovereign: RunningGateway, upstream: FakeUpstream, http: httpx.Client, place: str, stream: bool
) -> None:
    body = {"model": "ladder-0", "max_tokens": 16, "stream": stream, **ANTHROPIC_PLACES[place]}
    response = post(http, "/v1/messages", body)
    assert response.status_code == 200, response.text
    assert response.headers["x-ladder-model"] == "small-local"
    assert upstream.count("small-local") == 1 and clouds(upstream) == []


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_on_prem_model_never_falls_back_to_the_cloud(
    sovereign: RunningGateway, upstream: FakeUpstream, http: httpx.Client, path: str, stream: bool
) -> None:
    upstream.set("small-local", "fail")
    body: dict[str, Any] = {
        "model": "ladder-0",
        "max_tokens": 16,
        "stream": stream,
        "messages": turns(SECRET),
    }
    response = post(http, path, body)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] in ("upstream_error", "api_error") and "small-local" in error["message"]
    assert upstream.count("small-local") >= 1 and clouds(upstream) == []


def test_the_header_marks_a_request_sensitive_and_a_cloud_pin_is_refused(
    sovereign: RunningGateway, upstream: FakeUpstream, http: httpx.Client
) -> None:
    headers = {"x-ladder-sensitive": "true"}
    body = {"model": "ladder-0", "messages": [{"role": "user", "content": "our numbers"}]}
    answered = http.post("/v1/chat/completions", json=body, headers=headers)
    assert answered.headers["x-ladder-model"] == "small-local"
    pinned = http.post("/v1/chat/completions", json={**body, "model": "vision-pro"}, headers=headers)
    assert pinned.status_code == 400 and pinned.json()["error"]["code"] == "no_eligible_model"
    secret_pin = {"model": "mid-cloud", "messages": turns(SECRET)}
    assert http.post("/v1/chat/completions", json=secret_pin).status_code == 400
    assert upstream.count("small-local") == 1 and clouds(upstream) == []


def test_a_request_that_is_not_sensitive_still_reaches_the_cloud(
    sovereign: RunningGateway, upstream: FakeUpstream, http: httpx.Client
) -> None:
    """The guard is not a blanket refusal: the same shapes without the pattern go where the policy says."""
    body = {"model": "ladder-0", "max_tokens": 16, **ANTHROPIC_PLACES["tool_use input"]}
    body = json.loads(json.dumps(body).replace(SECRET, "the weather"))
    assert post(http, "/v1/messages", body).headers["x-ladder-model"] == "vision-pro"
    assert clouds(upstream) == ["vision-pro"]


def test_generated_conversations_with_a_secret_anywhere_stay_on_prem(
    sovereign: RunningGateway, upstream: FakeUpstream, http: httpx.Client
) -> None:
    """Multi-turn conversations with tools, the pattern put into one random string of the body."""
    conversations = st.one_of(
        st.tuples(st.just("/v1/chat/completions"), chat_conversations()),
        st.tuples(st.just("/v1/messages"), anthropic_conversations()),
    )

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=conversations, stream=st.booleans(), data=st.data())
    def check(case: tuple[str, dict[str, Any]], stream: bool, data: st.DataObject) -> None:
        path, body = case
        where = data.draw(st.sampled_from(list(string_paths(body["messages"]))))
        messages = body["messages"]
        leaf = messages
        for key in where:
            leaf = leaf[key]
        body = {**body, "stream": stream, "messages": with_value(messages, where, f"{leaf} {SECRET}")}
        upstream.seen.clear()
        response = post(http, path, body)
        assert clouds(upstream) == [], (where, body)
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            assert response.headers["x-ladder-model"] == "small-local"

    check()


def test_the_last_guard_before_any_upstream_call_drops_cloud_models(router: Router) -> None:
    """Whatever chose the order (policy, pin, fallback, a kept session), the dispatcher filters it."""
    models = list(router.pool.models)

    def reachable(sensitive: bool) -> list[str]:
        ctx = RequestContext(Client("c"), "r", Sensitivity(sensitive, "header" if sensitive else None), 0.0)
        return [m.name for m in models if allowed(ctx, m)]

    assert reachable(True) == ["small-local"]
    assert reachable(False) == [m.name for m in models]


def test_the_pool_files_patterns_count_in_the_gateway_too(
    test_pool: Path, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sensitive_patterns` in the pool file (what `ladder collect` reads) mark requests sensitive here too."""
    data = yaml.safe_load(test_pool.read_text(encoding="utf-8"))
    data["sensitive_patterns"] = [PATTERN]
    pool = tmp_path / "pool.yaml"
    pool.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    settings = load_settings(None, pool=pool, api_keys=[API_KEY], retries=0)
    assert settings.sensitive_patterns == []
    body = {"model": "ladder-0", "max_tokens": 16, "messages": turns(SECRET)}
    app = create_app(settings, router=Router.from_pool(load_pool(pool)))
    with (
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http,
    ):
        answered = http.post("/v1/chat/completions", json=body)
        pinned = http.post("/v1/chat/completions", json={**body, "model": "mid-cloud"})
    assert answered.headers["x-ladder-model"] == "small-local"
    assert pinned.status_code == 400 and clouds(upstream) == []
