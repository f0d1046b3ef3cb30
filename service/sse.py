"""Server-sent events: parse an upstream's chat-completion stream into chunk objects, and format events."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from service.errors import UpstreamError, UpstreamTimeoutError
from service.upstream import UpstreamReply


def json_object(raw: str | bytes, problem: str, reason: str) -> dict[str, Any]:
    """Parse an upstream's JSON object, or raise UpstreamError(``problem``, ``reason``)."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UpstreamError(problem, reason) from exc
    if not isinstance(value, dict):
        raise UpstreamError(problem, reason)
    return value


DONE = "[DONE]"


class SSEParser:
    """Incremental parser: feed bytes, get the ``data`` of each complete event."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events = []
        while b"\n\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            data = [line[5:].lstrip(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")]
            if data:
                events.append(b"\n".join(data).decode("utf-8"))
        return events


def data_event(payload: dict[str, Any] | str) -> bytes:
    text = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    )
    return f"data: {text}\n\n".encode()


def named_event(name: str, payload: dict[str, Any]) -> bytes:
    return (
        f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()
    )


async def upstream_chunks(reply: UpstreamReply, model: str) -> AsyncGenerator[dict[str, Any], None]:
    """The chunk objects of an upstream stream; raises ``UpstreamError`` when it fails or ends early."""
    parser = SSEParser()
    finished = False
    try:
        pending = [reply.body]
        rest = reply.rest
        while True:
            for raw in pending:
                for data in parser.feed(raw):
                    if data.strip() == DONE:
                        return
                    chunk = json_object(data, f"upstream for {model} sent an invalid event", "bad event")
                    if chunk.get("error"):
                        message = (
                            chunk["error"].get("message")
                            if isinstance(chunk["error"], dict)
                            else chunk["error"]
                        )
                        raise UpstreamError(
                            f"upstream for {model} failed mid-stream: {message}", "stream error"
                        )
                    finished = finished or any(
                        isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or ()
                    )
                    yield chunk
            if rest is None:
                break
            try:
                pending = [await anext(rest)]
            except StopAsyncIteration:
                break
    except httpx.TimeoutException as exc:
        raise UpstreamTimeoutError(f"upstream for {model} stalled mid-stream") from exc
    except httpx.TransportError as exc:
        raise UpstreamError(
            f"upstream for {model} broke off mid-stream: {type(exc).__name__}", "broken"
        ) from exc
    finally:
        await reply.response.aclose()
    if not finished:
        raise UpstreamError(f"upstream for {model} ended its stream before finishing", "truncated")
