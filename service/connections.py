"""An httpx transport whose keep-alive pool is a stack per origin: O(1) per request under high concurrency.

httpcore's ``AsyncConnectionPool`` rescans every connection (with a socket poll each) on every request and
every response close; at a few hundred requests per second to one upstream that scan costs more CPU than the
rest of the gateway. This pool keeps httpcore's HTTP/1.1 connections (parsing, TLS, timeouts) and httpx's
exception mapping, and only replaces the bookkeeping: pop an idle connection, or open one; push it back when
its response is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpcore
import httpx

Key = tuple[bytes, bytes, int]


class _ReturningStream:
    """A response body that hands its connection back to the pool once closed."""

    def __init__(
        self, stream: Any, pool: KeepAlivePool, key: Key, connection: httpcore.AsyncHTTPConnection
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._key = key
        self._connection = connection
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            if hasattr(self._stream, "aclose"):
                await self._stream.aclose()
            await self._pool.release(self._key, self._connection)


class KeepAlivePool:
    """Idle HTTP/1.1 connections kept per origin (LIFO), at most ``max_idle`` each."""

    def __init__(self, ssl_context: Any, max_idle: int, keepalive_expiry: float | None) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[Key, list[httpcore.AsyncHTTPConnection]] = {}

    async def _acquire(self, request: httpcore.Request) -> tuple[Key, httpcore.AsyncHTTPConnection]:
        origin = request.url.origin
        key = (origin.scheme, origin.host, origin.port)
        stack = self._idle.get(key)
        while stack:
            connection = stack.pop()
            if connection.is_available() and not connection.has_expired():
                return key, connection
            await connection.aclose()
        connection = httpcore.AsyncHTTPConnection(
            origin=origin, ssl_context=self._ssl_context, keepalive_expiry=self._keepalive_expiry
        )
        return key, connection

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        key, connection = await self._acquire(request)
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await connection.aclose()
            raise
        response.stream = _ReturningStream(response.stream, self, key, connection)
        return response

    async def release(self, key: Key, connection: httpcore.AsyncHTTPConnection) -> None:
        stack = self._idle.setdefault(key, [])
        if connection.is_idle() and len(stack) < self._max_idle:
            stack.append(connection)
        else:
            await connection.aclose()

    async def aclose(self) -> None:
        idle = [c for stack in self._idle.values() for c in stack]
        self._idle.clear()
        for connection in idle:
            await connection.aclose()

    async def __aenter__(self) -> KeepAlivePool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class KeepAliveTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` (HTTP/1.1, TLS verified) with ``KeepAlivePool`` for its pool."""

    def __init__(self, max_idle: int = 256, keepalive_expiry: float = 5.0) -> None:
        super().__init__(limits=httpx.Limits(max_connections=1, max_keepalive_connections=0))
        self._pool = KeepAlivePool(httpx.create_ssl_context(), max_idle, keepalive_expiry)  # type: ignore[assignment]
