"""A lean HTTP/1.1 transport for httpx: plain-HTTP upstreams over asyncio streams, parsed by httptools.

In-cluster upstreams (vLLM, NIM, llama.cpp, a LiteLLM proxy) usually speak plain HTTP on a private network.
For them this transport replaces httpcore/h11/anyio, which cost more event-loop time per call than the rest of
the gateway; HTTPS (and anything else) goes to the fallback transport unchanged. Errors are httpx's own
exception types, so callers see no difference.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

Key = tuple[str, int]
READ_SIZE = 65536


class _Parser:
    """httptools callbacks collecting one response."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.headers_done = False
        self.done = False
        self.keep_alive = False
        self.parser: Any = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = bool(self.parser.should_keep_alive())  # only valid while parsing this message

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    """One keep-alive connection to one origin."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


def _timeout(request: httpx.Request, kind: str) -> float | None:
    value = request.extensions.get("timeout", {}).get(kind)
    return float(value) if value is not None else None


class _Body(httpx.AsyncByteStream):
    """A response body read as it arrives; the connection goes back to the pool once it is complete."""

    def __init__(
        self,
        transport: LeanHTTPTransport,
        key: Key,
        connection: _Connection,
        parser: Any,
        state: _Parser,
        request: httpx.Request,
    ) -> None:
        self._transport = transport
        self._key = key
        self._connection = connection
        self._parser = parser
        self._state = state
        self._request = request
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        state = self._state
        try:
            while True:
                if state.body:
                    chunks, state.body = state.body, []
                    for chunk in chunks:
                        yield chunk
                if state.done:
                    break
                data = await _read(self._connection, self._request)
                if not data:
                    raise httpx.RemoteProtocolError(
                        "the upstream closed the connection mid-body", request=self._request
                    )
                _feed(self._parser, data, self._request)
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._state.done and self._state.keep_alive and self._connection.usable:
            self._transport.release(self._key, self._connection)
        else:
            self._connection.close()


async def _read(connection: _Connection, request: httpx.Request) -> bytes:
    try:
        return await asyncio.wait_for(connection.reader.read(READ_SIZE), _timeout(request, "read"))
    except TimeoutError as exc:
        connection.close()
        raise httpx.ReadTimeout("timed out reading from the upstream", request=request) from exc
    except OSError as exc:
        connection.close()
        raise httpx.ReadError(str(exc), request=request) from exc


def _feed(parser: Any, data: bytes, request: httpx.Request) -> None:
    try:
        parser.feed_data(data)
    except httptools.HttpParserError as exc:
        raise httpx.RemoteProtocolError(f"invalid HTTP response: {exc}", request=request) from exc


class LeanHTTPTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive (a LIFO stack of idle connections per origin) for ``http://`` URLs."""

    def __init__(self, fallback: httpx.AsyncBaseTransport, max_idle: int = 256) -> None:
        self._fallback = fallback
        self._max_idle = max_idle
        self._idle: dict[Key, list[_Connection]] = {}

    def release(self, key: Key, connection: _Connection) -> None:
        stack = self._idle.setdefault(key, [])
        if len(stack) < self._max_idle:
            stack.append(connection)
        else:
            connection.close()

    async def _connect(self, request: httpx.Request, key: Key) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*key), _timeout(request, "connect")
            )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("timed out connecting to the upstream", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return _Connection(reader, writer)

    def _pooled(self, key: Key) -> _Connection | None:
        stack = self._idle.get(key)
        while stack:
            connection = stack.pop()
            if connection.usable:
                return connection
            connection.close()
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            return await self._fallback.handle_async_request(request)
        key = (request.url.host, request.url.port or 80)
        payload = await _serialise(request)
        reused = self._pooled(key)
        for connection in ([reused] if reused is not None else []) + [None]:
            fresh = connection is None
            connection = connection or await self._connect(request, key)
            state = _Parser()
            parser = httptools.HttpResponseParser(state)
            state.parser = parser
            try:
                connection.writer.write(payload)
                while not state.headers_done:
                    data = await _read(connection, request)
                    if not data:
                        break
                    _feed(parser, data, request)
            except httpx.ReadError:
                connection.close()
                if fresh:
                    raise
                continue  # a stale keep-alive connection (reset by the upstream): once more on a new one
            except BaseException:
                connection.close()
                raise
            if state.headers_done:
                return httpx.Response(
                    parser.get_status_code(),
                    headers=state.headers,
                    stream=_Body(self, key, connection, parser, state, request),
                    extensions={"http_version": b"HTTP/1.1"},
                )
            connection.close()
            if fresh:  # a new connection closed before answering: not a stale keep-alive, give up
                raise httpx.RemoteProtocolError(
                    "the upstream closed the connection without a response", request=request
                )
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        for stack in self._idle.values():
            for connection in stack:
                connection.close()
        self._idle.clear()
        await self._fallback.aclose()


async def _serialise(request: httpx.Request) -> bytes:
    body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
    target = request.url.raw_path
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    has_length = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"transfer-encoding":
            continue
        has_length = has_length or lower == b"content-length"
        lines.append(name + b": " + value)
    if not has_length:
        lines.append(b"content-length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
