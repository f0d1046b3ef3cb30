"""Hostile input: thousands of generated and mutated bodies to every endpoint of a real gateway, zero 500s."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gateway_support.common import API_KEY, AUTH, RunningGateway
from gateway_support.conversations import (
    JSON_VALUES,
    WORDS,
    anthropic_conversations,
    chat_conversations,
    mutated,
    responses_conversations,
)
from gateway_support.upstream import FakeUpstream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest_plugins = ["gateway_support.fixtures"]

EXAMPLES = 250  # per endpoint; the whole module stays well under a minute on two cores
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
UPSTREAM_FAILURES = (502, 504)  # the fake upstream may refuse a mutated body; the gateway answers it cleanly

ROUTE_BODIES = st.one_of(chat_conversations(), st.fixed_dictionaries({"prompt": WORDS}))
RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"x"',
            b"{",
            b"NaN",
            b'{"model": NaN}',
            b'{"a": Infinity}',
            b"[" * 5000,
            b"\xff",
        ]
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "x-request-id": st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=200),
        "x-ladder-sensitive": st.sampled_from(["true", "false", "1", "", "yes", "maybe"]),
        "content-type": st.sampled_from(["application/json", "text/plain", "multipart/form-data"]),
    },
)


@pytest.fixture()
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as c:
        yield c


def send(http: httpx.Client, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
    with http.stream("POST", path, content=content, headers=headers) as response:
        response.read()
    return response


def check_answer(response: httpx.Response, anthropic: bool) -> None:
    """No 500; every error in the API's envelope; every stream closed by [DONE], message_stop or an error."""
    status = response.status_code
    assert status != 500 and (status < 500 or status in UPSTREAM_FAILURES), response.text
    if status >= 400:
        body = response.json()
        if anthropic:
            assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        else:
            assert set(body["error"]) == {"message", "type", "param", "code"}, body
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        text = response.text
        closed = ("data: [DONE]", "event: message_stop", "event: response.completed", "event: response.incomplete")
        assert any(c in text for c in closed) or "error" in text, text[-300:]


FEEDBACK = st.fixed_dictionaries({"request_id": WORDS, "thumbs": st.sampled_from(["up", "down"])})
POSTS = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/v1/route",
    "/v1/feedback",
]
GETS = ["/v1/models", "/v1/usage", "/healthz", "/readyz", "/metrics"]


@pytest.mark.parametrize(
    ("path", "bodies", "answers"),
    [
        ("/v1/chat/completions", mutated(chat_conversations()), True),
        ("/v1/messages", mutated(anthropic_conversations()), True),
        ("/v1/messages/count_tokens", mutated(anthropic_conversations()), True),
        ("/v1/responses", mutated(responses_conversations()), True),
        ("/v1/route", mutated(ROUTE_BODIES), True),
        ("/v1/feedback", mutated(FEEDBACK), False),  # no traffic store here: a valid body is a clean 404
    ],
)
def test_mutated_bodies_never_give_500(
    gateway: RunningGateway,
    upstream: FakeUpstream,
    http: httpx.Client,
    path: str,
    bodies: st.SearchStrategy[dict[str, Any]],
    answers: bool,
) -> None:
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(body=bodies, stream=st.booleans(), headers=HEADERS)
    def check(body: dict[str, Any], stream: bool, headers: dict[str, str]) -> None:
        if stream and "stream" not in body:
            body = {**body, "stream": True}
        response = send(http, path, json.dumps(body).encode(), headers)
        statuses[response.status_code] += 1
        check_answer(response, anthropic=path.startswith("/v1/messages"))

    check()
    # both sides exercised (random bodies: a loose bar, a run once gave 9 answers in 250)
    assert statuses[400] > EXAMPLES / 100, statuses
    assert statuses[200] > EXAMPLES / 100 or not answers, statuses


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/route"]
)
def test_raw_bytes_never_give_500(gateway: RunningGateway, http: httpx.Client, path: str) -> None:
    @settings(FUZZ, max_examples=EXAMPLES // 4)
    @given(content=RAW_BODIES, headers=HEADERS)
    def check(content: bytes, headers: dict[str, str]) -> None:
        response = send(http, path, content, headers)
        assert response.status_code in (400, 413), response.text
        check_answer(response, anthropic=path.startswith("/v1/messages"))

    check()


def test_every_get_endpoint_and_unknown_paths(gateway: RunningGateway, http: httpx.Client) -> None:
    paths = st.sampled_from(
        ["/v1/models", "/healthz", "/readyz", "/metrics", "/", "/openapi.json", "/v1/nope"]
    )

    @settings(FUZZ, max_examples=EXAMPLES // 2)
    @given(
        path=paths,
        method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
        query=st.dictionaries(WORDS, WORDS, max_size=3),
        headers=HEADERS,
        key=st.sampled_from([API_KEY, "", "wrong-key-0123456789", "Bearer"]),
    )
    def check(path: str, method: str, query: dict[str, str], headers: dict[str, str], key: str) -> None:
        response = http.request(
            method, path, params=query, headers={**headers, "authorization": f"Bearer {key}".strip()}
        )
        assert response.status_code < 500 or (path == "/readyz" and response.status_code == 503), (
            response.text
        )
        if response.status_code >= 400 and path != "/readyz":
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    check()


def test_endpoints_in_the_openapi_schema_are_all_fuzzed(gateway: RunningGateway, http: httpx.Client) -> None:
    """A new endpoint has to be added to this module's lists."""
    assert set(http.get("/openapi.json").json()["paths"]) <= {*POSTS, *GETS}


# Cases found by hand or by the fuzzer, kept as plain regression tests: (path, change, the error's ``param``
# for OpenAI's envelope or a piece of its message for Anthropic's, which has no ``param``).
FOUND: list[tuple[str, Any, str | None]] = [
    ("/v1/chat/completions", {"extra_body": {"messages": "x"}}, "extra_body"),
    ("/v1/chat/completions", {"extra_body": {"model": "vision-pro"}}, "extra_body"),
    ("/v1/chat/completions", {"extra_body": {"stream": True}}, "extra_body"),
    ("/v1/chat/completions", {"extra_body": {"temperature": "hot"}}, "temperature"),
    ("/v1/chat/completions", {"extra_body": "x"}, "extra_body"),
    ("/v1/route", {"extra_body": {"messages": [1]}}, "extra_body"),
    ("/v1/messages", {"content": [{"type": "image", "source": "abc"}]}, "messages.0.content.0.image.source"),
    (
        "/v1/messages",
        {"content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]},
        "image blocks",
    ),
    (
        "/v1/messages",
        {"content": [{"type": "document", "source": {"type": "base64", "data": "x"}}]},
        "document blocks",
    ),
    ("/v1/messages", {"content": [{"type": "tool_result", "tool_use_id": 3}]}, None),
    ("/v1/messages", {"content": [{"type": "text"}]}, None),
    ("/v1/messages", {"content": ["just a string"]}, None),
    ("/v1/messages", {"tool_choice": {"type": "tool"}}, "needs a 'name'"),
    ("/v1/messages", {"system": [{"type": "image", "source": 1}]}, None),
]


@pytest.mark.parametrize(("path", "change", "param"), FOUND)
def test_found_malformed_bodies_are_400(
    gateway: RunningGateway,
    upstream: FakeUpstream,
    http: httpx.Client,
    path: str,
    change: Any,
    param: str | None,
) -> None:
    base: dict[str, Any] = {
        "model": "ladder",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if "content" in change:
        base["messages"] = [{"role": "user", "content": change["content"]}]
    else:
        base.update(change)
    response = http.post(path, json=base)
    assert response.status_code == 400, response.text
    check_answer(response, anthropic=path.startswith("/v1/messages"))
    if not path.startswith("/v1/messages"):
        assert response.json()["error"]["type"] == "invalid_request_error"
        if param is not None:
            assert response.json()["error"]["param"] == param
    elif param is not None:
        assert param in response.json()["error"]["message"]
    assert upstream.seen == []


@pytest.mark.parametrize("content", [b"[" * 100_000, b'{"model": NaN}', b'{"a": -Infinity}'])
def test_found_raw_bodies_are_400(http: httpx.Client, content: bytes) -> None:
    response = http.post("/v1/chat/completions", content=content)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_malformed_upstream_answer_is_502(
    gateway: RunningGateway, upstream: FakeUpstream, http: httpx.Client, path: str
) -> None:
    upstream.set("small-local", "badshape")
    body = {"model": "small-local", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    response = http.post(path, json=body)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["type"] in ("upstream_error", "api_error")
    assert "small-local" in response.json()["error"]["message"]
