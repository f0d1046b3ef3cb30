"""The upstream transport: plain HTTP on the lean path with keep-alive, anything else to the fallback."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from gateway_support.servers import ServerThread
from gateway_support.upstream import FakeUpstream, fake_upstream_app

from service.http11 import LeanHTTPTransport


def test_https_goes_to_the_fallback_transport() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"ok": True})

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(transport=LeanHTTPTransport(httpx.MockTransport(handler))) as client:
            return await client.post("https://api.example.com/v1/chat/completions", json={})

    assert asyncio.run(run()).json() == {"ok": True}
    assert seen == ["https://api.example.com/v1/chat/completions"]


def test_plain_http_reuses_its_connection_and_streams() -> None:
    state = FakeUpstream()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    async def run(url: str) -> tuple[list[int], str]:
        transport = LeanHTTPTransport(httpx.MockTransport(lambda r: httpx.Response(500)))
        async with httpx.AsyncClient(transport=transport) as client:
            statuses = [(await client.post(url, json=body)).status_code for _ in range(3)]
            idle = sum(len(stack) for stack in transport._idle.values())
            async with client.stream("POST", url, json={**body, "stream": True}) as response:
                text = "".join([chunk async for chunk in response.aiter_text()])
            return [*statuses, idle], text

    with ServerThread(fake_upstream_app(state)) as server:
        statuses, text = asyncio.run(run(f"{server.url}/small/v1/chat/completions"))
    assert statuses == [200, 200, 200, 1]  # one connection, kept alive between calls
    assert text.endswith("data: [DONE]\n\n") and '"content": " says"' in text


def test_a_refused_connection_is_an_httpx_connect_error() -> None:
    async def run() -> None:
        transport = LeanHTTPTransport(httpx.MockTransport(lambda r: httpx.Response(500)))
        async with httpx.AsyncClient(transport=transport) as client:
            await client.post("http://127.0.0.1:9/v1/chat/completions", json={})

    with pytest.raises(httpx.ConnectError):
        asyncio.run(run())
