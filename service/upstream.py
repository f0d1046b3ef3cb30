"""Calls to upstreams over one pooled ``httpx.AsyncClient``; errors become gateway errors."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ladder.pool import ModelSpec
from service.connections import KeepAliveTransport
from service.errors import UpstreamError, UpstreamRejectedError, UpstreamTimeoutError
from service.http11 import LeanHTTPTransport

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


@dataclass
class UpstreamReply:
    """An upstream's answer: the open response, and for a stream its first chunk (already read)."""

    response: httpx.Response
    body: bytes
    rest: AsyncIterator[bytes] | None = field(default=None)


def upstream_body(spec: ModelSpec, body: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    """The body for ``spec``'s upstream: its model id and extra fields, its system prompt first."""
    out = {**body, **spec.extra_body, "model": spec.upstream.model}
    if spec.system_prompt:
        out["messages"] = [{"role": "system", "content": spec.system_prompt}, *body.get("messages", [])]
    if stream:
        out["stream"] = True
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return out


def upstream_url(spec: ModelSpec) -> str:
    return str(spec.upstream.base_url).rstrip("/") + "/chat/completions"


def _rejection(response: httpx.Response, body: bytes, spec: ModelSpec) -> UpstreamRejectedError:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    message = f"upstream for {spec.name} refused the request (HTTP {response.status_code})"
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        message = f"{message}: {parsed['error'].get('message', '')}"
    return UpstreamRejectedError(response.status_code, message, parsed if isinstance(parsed, dict) else None)


class UpstreamClient:
    """One connection pool for every upstream; upstream keys are read from the environment per call."""

    def __init__(
        self,
        connect_timeout_s: float,
        keepalive_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._client = httpx.AsyncClient(
            transport=transport
            or LeanHTTPTransport(KeepAliveTransport(max_idle=keepalive_connections), keepalive_connections),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def headers(self, spec: ModelSpec, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json", **extra}
        if spec.upstream.api_key_env:
            key = os.environ.get(spec.upstream.api_key_env)
            if key:
                headers["authorization"] = f"Bearer {key}"
        return headers

    async def send(
        self,
        spec: ModelSpec,
        body: dict[str, Any],
        timeout_s: float,
        stream: bool,
        headers: Mapping[str, str],
    ) -> UpstreamReply:
        """One attempt: the whole body, or a stream's headers and first chunk, within ``timeout_s``."""
        timeout = httpx.Timeout(timeout_s, connect=min(self.connect_timeout_s, timeout_s))
        request = self._client.build_request(
            "POST",
            upstream_url(spec),
            content=json.dumps(upstream_body(spec, body, stream), separators=(",", ":")).encode(),
            headers=self.headers(spec, headers),
            timeout=timeout,
        )
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._client.send(request, stream=True)
                if stream and response.status_code < 300:
                    chunks = response.aiter_bytes()
                    first = await anext(chunks, b"")
                    if not first:
                        raise httpx.RemoteProtocolError("the stream ended before its first event")
                    return UpstreamReply(response, first, chunks)
                data = await response.aread()
            await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            await _close(response)
            raise UpstreamTimeoutError(f"upstream for {spec.name} timed out after {timeout_s:.3g}s") from exc
        except httpx.TransportError as exc:
            await _close(response)
            raise UpstreamError(
                f"upstream for {spec.name} failed: {type(exc).__name__}", type(exc).__name__
            ) from exc
        except BaseException:
            await _close(response)
            raise
        status = response.status_code
        if status >= 500 or status in RETRYABLE_STATUSES:
            raise UpstreamError(f"upstream for {spec.name} answered HTTP {status}", f"HTTP {status}")
        if status >= 400:
            raise _rejection(response, data, spec)
        return UpstreamReply(response, data)


async def _close(response: httpx.Response | None) -> None:
    if response is not None:
        await response.aclose()
