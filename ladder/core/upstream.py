"""Calls to OpenAI-compatible upstreams over one pool of connections: limits, retry rules, checked replies.

The pool is aiohttp's by default, used directly (``ladder.core.upstream_http``), or httpx's
(``http="httpx"``, or a test's ``httpx`` transport): either keeps connections alive within its limits and
expiry, honours ``HTTPS_PROXY`` and ``NO_PROXY``, and verifies TLS against certifi plus an optional private CA
bundle. Neither resends a POST once written. This module says, for every failure, whether the same model may
be tried again (``UpstreamError.retry_same``): only when the request provably did not reach it (no connection
was made) or was answered with an explicit server error, never after a timeout or a reset.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import httpx
from httpx_sse import ServerSentEvent, SSEError

from ladder.core.errors import UpstreamError, UpstreamRejectedError, UpstreamTimeoutError
from ladder.core.pool import ModelSpec
from ladder.core.secrets import secret
from ladder.core.upstream_http import AiohttpPool, HttpxPool, Opened, Pool
from ladder.core.upstream_replies import Chunk, Completion, completion
from ladder.core.upstream_replies import chunk as checked_chunk

# answered with an explicit error before doing the work: the same model may be tried again
RETRY_SAME_STATUSES = frozenset({408, 409, 425, 500, 502, 503})
# the request itself is wrong: the client's error, relayed (cut down to OpenAI's envelope), never retried
REJECTED_STATUSES = frozenset({400, 413, 422})
MAX_RETRY_AFTER_S = 3600.0
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
HttpClient = Literal["aiohttp", "httpx"]


async def _nothing() -> None:
    return None


@dataclass
class UpstreamReply:
    """An upstream's answer: its status, and a plain answer's body or a stream's events.

    ``body`` is a plain answer's whole body (``b""`` for a stream) and ``completion`` its checked view;
    ``events`` yields a stream's server-sent events, the first one (already received) included, and
    ``close`` lets go of a stream's connection.
    """

    status: int
    body: bytes
    completion: Completion | None = None
    events: AsyncIterator[ServerSentEvent] | None = field(default=None)
    close: Callable[[], Awaitable[None]] = _nothing

    async def aclose(self) -> None:
        if isinstance(self.events, AsyncGenerator):
            await self.events.aclose()
        await self.close()


def upstream_body(spec: ModelSpec, body: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    """The body for ``spec``'s upstream: its model id and extra fields, its system prompt first."""
    out = {**body, **spec.extra_body, "model": spec.upstream.model}
    if spec.system_prompt:
        out["messages"] = [{"role": "system", "content": spec.system_prompt}, *body.get("messages", [])]
    if stream:
        out["stream"] = True
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        out.pop("stream", None)
        out.pop("stream_options", None)
    return out


def upstream_url(spec: ModelSpec) -> str:
    return str(spec.upstream.base_url).rstrip("/") + "/chat/completions"


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` header in seconds (delta or HTTP date), capped at an hour; None when absent."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _rejection(status: int, body: bytes, spec: ModelSpec) -> UpstreamRejectedError:
    """A 400-like refusal, with only OpenAI's four error fields of the upstream's envelope kept."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = f"upstream for {spec.name} refused the request (HTTP {status})"
    envelope: dict[str, Any] | None = None
    if isinstance(error, dict):
        upstream_message = str(error.get("message") or "")[:500]
        message = f"{message}: {upstream_message}"
        envelope = {
            "error": {
                "message": message,
                "type": str(error.get("type") or "invalid_request_error"),
                "param": error.get("param") if isinstance(error.get("param"), str) else None,
                "code": error.get("code") if isinstance(error.get("code"), str | int) else None,
            }
        }
    return UpstreamRejectedError(status, message, envelope)


def _status_error(response: Opened, spec: ModelSpec) -> UpstreamError:
    """An error status that falls back to the next model; the upstream's body is never kept."""
    status = response.status
    wait = retry_after_s(response.headers) if status in (429, 503) else None
    return UpstreamError(
        f"upstream for {spec.name} answered HTTP {status}",
        f"HTTP {status}",
        retry_same=status in RETRY_SAME_STATUSES and wait is None,
        retry_after_s=wait,
    )


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    """True (certifi, or ``SSL_CERT_FILE``) or a context that also trusts ``ca_bundle``'s CAs."""
    if ca_bundle is None:
        return True
    context = httpx.create_ssl_context()
    context.load_verify_locations(cafile=str(ca_bundle))
    return context


class UpstreamClient:
    """One connection pool for every upstream; upstream keys are read from the environment per call."""

    def __init__(
        self,
        connect_timeout_s: float = 5.0,
        keepalive_connections: int = 256,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        max_connections: int = 512,
        keepalive_expiry_s: float = 5.0,
        ca_bundle: Path | None = None,
        http: HttpClient = "aiohttp",
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(keepalive_connections, max_connections),
            keepalive_expiry=keepalive_expiry_s,
        )
        verify = ssl_context(ca_bundle)
        self._pool: Pool = (
            AiohttpPool(limits, verify)
            if http == "aiohttp" and transport is None
            else HttpxPool(limits, verify, transport)
        )
        self._urls: dict[str, str] = {}

    def _url(self, spec: ModelSpec) -> str:
        key = str(spec.upstream.base_url)
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = upstream_url(spec)
        return url

    async def aclose(self) -> None:
        await self._pool.aclose()

    def headers(self, spec: ModelSpec, extra: Mapping[str, str], stream: bool = False) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            **extra,
        }
        if spec.upstream.api_key_env:
            key = secret(spec.upstream.api_key_env)
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
        *,
        first_byte_s: float | None = None,
    ) -> UpstreamReply:
        """One attempt: a plain answer within ``timeout_s``, or a stream's headers and first event.

        The response headers (and a stream's first event) must arrive within ``first_byte_s`` (default
        ``timeout_s``); a stream's later reads each get ``timeout_s``.
        """
        first_byte_s = min(first_byte_s or timeout_s, timeout_s)
        content = json.dumps(upstream_body(spec, body, stream), separators=(",", ":")).encode()
        response: Opened | None = None
        events: AsyncGenerator[ServerSentEvent, None] | None = None
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(first_byte_s) as limit:
                response = await self._pool.open(
                    self._url(spec),
                    content,
                    self.headers(spec, headers, stream),
                    timeout_s,
                    first_byte_s,
                    min(self.connect_timeout_s, first_byte_s),
                )
                if stream and response.status < 300:
                    events = response.events()
                    first = await anext(events, None)
                    if first is None:
                        raise UpstreamError(f"upstream for {spec.name} ended its stream at once", "empty stream")
                    return UpstreamReply(response.status, b"", None, _chain(first, events), response.aclose)
                limit.reschedule(started + timeout_s)  # the headers came: the body within the attempt
                data = await response.read()
            await response.aclose()
        except BaseException as exc:
            if events is not None:
                await events.aclose()
            if response is not None:
                await response.aclose()
            translated = _translate(exc, spec, timeout_s if response else first_byte_s)
            if translated is exc:
                raise
            raise translated from exc
        status = response.status
        if status in REJECTED_STATUSES:
            raise _rejection(status, data, spec)
        if status >= 300:
            raise _status_error(response, spec)
        return UpstreamReply(status, data, completion(data, spec.name))


def _translate(exc: BaseException, spec: ModelSpec, limit_s: float) -> BaseException:
    """httpx's, aiohttp's and asyncio's errors as UpstreamErrors; anything else (cancellation) unchanged."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, SSEError):
        return UpstreamError(f"upstream for {spec.name} answered a stream that is not SSE", "bad stream")
    kind = failure_kind(exc)
    if kind == "timeout":
        return UpstreamTimeoutError(f"upstream for {spec.name} timed out after {limit_s:.3g}s")
    if kind is None:
        return exc
    retry_same = kind in ("ConnectError", "ConnectTimeout", "PoolTimeout")
    return UpstreamError(f"upstream for {spec.name} failed: {kind}", kind, retry_same=retry_same)


def failure_kind(exc: BaseException) -> str | None:
    """``timeout``; ``ConnectError``, ``ConnectTimeout`` or ``PoolTimeout`` (nothing was sent); another
    transport error's name (it may have reached the upstream); None for anything else.

    aiohttp's errors are read as themselves (an httpx error wrapping one defers to its ``__cause__``), so a
    disconnect after the request was written is never taken for a connect failure.
    """
    cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) else exc
    if isinstance(cause, aiohttp.ClientError):
        if isinstance(cause, aiohttp.ConnectionTimeoutError):
            return "ConnectTimeout"
        if isinstance(cause, aiohttp.ServerTimeoutError):
            return "timeout"
        if isinstance(cause, aiohttp.ClientConnectorError):
            return "ConnectError"
        return type(cause).__name__
    if isinstance(exc, NOT_SENT):
        return type(exc).__name__
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.TransportError | httpx.StreamError):
        return type(exc).__name__
    return None


async def _chain(
    first: ServerSentEvent, rest: AsyncGenerator[ServerSentEvent, None]
) -> AsyncGenerator[ServerSentEvent, None]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()


async def stream_chunks(reply: UpstreamReply, model: str) -> AsyncGenerator[Chunk, None]:
    """A stream's checked chunks; raises ``UpstreamError`` when it breaks off, stalls (a timeout),
    sends a malformed chunk or ends before a ``finish_reason``. The reply is closed in every case."""
    done = False
    try:
        if reply.events is None:
            raise UpstreamError(f"upstream for {model} answered without a stream", "bad stream")
        async for event in reply.events:
            if event.data.strip() == "[DONE]":
                return
            if not event.data:
                continue
            value = checked_chunk(event.data, model)
            done = done or any(value.finish_reasons)
            yield value
    except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
        kind = failure_kind(exc)
        if kind == "timeout":
            raise UpstreamTimeoutError(f"upstream for {model} stalled mid-stream") from exc
        raise UpstreamError(f"upstream for {model} broke off mid-stream: {kind}", "broken") from exc
    finally:
        await reply.aclose()
    if not done:
        raise UpstreamError(f"upstream for {model} ended its stream before finishing", "truncated")
