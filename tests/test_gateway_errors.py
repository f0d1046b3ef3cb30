"""Bad requests are answered 4xx in OpenAI's error envelope, never 500; upstream refusals pass through."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from gateway_support.common import AUTH, RunningGateway
from gateway_support.upstream import FakeUpstream

pytest_plugins = ["gateway_support.fixtures"]

USER = [{"role": "user", "content": "hi"}]


def post(gateway: RunningGateway, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)


def assert_envelope(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return dict(error)


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'{"model": "ladder"}', "messages"),
        (b'{"model": "ladder", "messages": []}', "messages"),
        (b'{"model": "ladder", "messages": "hi"}', "messages"),
        (b'{"model": 3, "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "ladder", "messages": [{"role": "wizard", "content": "hi"}]}', "messages.0.role"),
        (
            b'{"model": "ladder", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
            "temperature",
        ),
        (
            b'{"model": "ladder", "messages": [{"role": "user", "content": "hi"}], "tolerance": 2}',
            "tolerance",
        ),
        (b'{"model": "ladder", "messages": [{"role": "user", "content": "hi"}], "stream": "x"}', "stream"),
        (b'{"model": "ladder", "messages": [{"role": "user", "content": "   "}]}', None),
        (b'{"model": "ladder", "messages": [{"role": "system", "content": "be brief"}]}', None),
        (b'{"model": "ladder", "messages": [{"role": "user", "content": 42}]}', "messages.0.content"),
    ],
)
def test_malformed_requests_are_400(
    gateway: RunningGateway, upstream: FakeUpstream, content: bytes, param: str | None
) -> None:
    response = post(
        gateway, "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    error = assert_envelope(response, 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert upstream.seen == []


def test_unknown_model_is_404(gateway: RunningGateway) -> None:
    assert_envelope(
        post(gateway, "/v1/chat/completions", json={"model": "gpt-9", "messages": USER}),
        404,
        "model_not_found",
    )
    assert_envelope(post(gateway, "/v1/chat/completions", json={"model": "ladder-7", "messages": USER}), 404)
    body = {"model": "ladder", "messages": USER, "models": ["mid-cloud", "nope"]}
    assert_envelope(post(gateway, "/v1/chat/completions", json=body), 404, "model_not_found")
    with pytest.raises(openai.NotFoundError):
        gateway.openai().chat.completions.create(model="gpt-9", messages=USER)  # type: ignore[arg-type]


def test_oversized_body_is_413(start_gateway: Any) -> None:
    gateway = start_gateway(max_body_bytes=1000)
    body = {"model": "ladder", "messages": [{"role": "user", "content": "x" * 2000}]}
    assert_envelope(post(gateway, "/v1/chat/completions", json=body), 413, "request_too_large")

    def chunks() -> Any:
        yield b'{"model": "ladder", "messages": [{"role": "user", "content": "'
        yield b"y" * 5000
        yield b'"}]}'

    response = post(
        gateway, "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_envelope(response, 413)


def test_no_eligible_model_is_400(gateway: RunningGateway) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = {
        "model": "small-local",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, image]}],
    }
    error = assert_envelope(post(gateway, "/v1/chat/completions", json=body), 400, "no_eligible_model")
    assert "lacks image" in error["message"]


def test_upstream_refusal_passes_through_without_fallback(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    upstream.set("small-local", "reject")
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().chat.completions.create(model="ladder-1", messages=USER)
    assert caught.value.status_code == 400
    assert caught.value.param == "temperature"  # the upstream's own envelope
    assert [s.model for s in upstream.seen] == ["small-local"]


def test_route_needs_messages_or_prompt(gateway: RunningGateway) -> None:
    assert_envelope(post(gateway, "/v1/route", json={"model": "ladder"}), 400)
    assert_envelope(post(gateway, "/v1/route", json={"prompt": "hi", "models": []}), 400)


def test_errors_are_counted_by_status(gateway: RunningGateway) -> None:
    post(gateway, "/v1/chat/completions", json={"model": "gpt-9", "messages": USER})
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'ladder_errors_total{code="model_not_found",status="404"} 1.0' in metrics


def test_messages_errors_use_the_anthropic_envelope(gateway: RunningGateway) -> None:
    response = post(gateway, "/v1/messages", json={"model": "ladder", "messages": USER})
    assert response.status_code == 400
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"
