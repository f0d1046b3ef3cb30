"""The two connection pools an ``UpstreamClient`` sends through, behind one interface: aiohttp's and httpx's.

aiohttp's is used directly (a third of the CPU per call of the same pool behind httpx's client); httpx's is
the other choice, and the one that takes a test's ``httpx.AsyncBaseTransport``. Both verify TLS against
certifi (or ``SSL_CERT_FILE``) plus an optional private CA bundle, honour ``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY`` and ``NO_PROXY`` as they were when the pool was made, never follow redirects and never resend a
POST. Their errors pass through unchanged: ``ladder.core.upstream`` translates both.
"""

from __future__ import annotations

import codecs
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Protocol, cast

import aiohttp
import httpx
from httpx_sse import EventSource, ServerSentEvent
from yarl import URL


class Opened(Protocol):
    """An upstream's response whose status and headers have arrived; its body is still to be read."""

    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    def events(self) -> AsyncGenerator[ServerSentEvent, None]:
        """The body as server-sent events (``SSEError`` unless it is ``text/event-stream``)."""
        ...

    async def aclose(self) -> None: ...


class Pool(Protocol):
    """Keep-alive connections to every upstream; ``open`` sends one POST and returns at its headers."""

    async def open(
        self, url: str, content: bytes, headers: dict[str, str], timeout_s: float, first_byte_s: float, connect_s: float
    ) -> Opened: ...

    async def aclose(self) -> None: ...


class _HttpxOpened:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        return await self.response.aread()

    def events(self) -> AsyncGenerator[ServerSentEvent, None]:
        return EventSource(self.response).aiter_sse()

    async def aclose(self) -> None:
        await self.response.aclose()


class HttpxPool:
    """httpx's client and pool (``transport``: a test's seam)."""

    def __init__(
        self, limits: httpx.Limits, verify: ssl.SSLContext | bool, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self._client = httpx.AsyncClient(
            transport=transport, limits=limits, verify=verify, trust_env=True, follow_redirects=False
        )
        self._urls: dict[str, httpx.URL] = {}

    async def open(
        self, url: str, content: bytes, headers: dict[str, str], timeout_s: float, first_byte_s: float, connect_s: float
    ) -> Opened:
        parsed = self._urls.get(url)
        if parsed is None:  # parsing costs more than the rest of building a request
            parsed = self._urls[url] = httpx.URL(url)
        request = self._client.build_request(
            "POST",
            parsed,
            content=content,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_s, pool=first_byte_s),
        )
        return _HttpxOpened(await self._client.send(request, stream=True))

    async def aclose(self) -> None:
        await self._client.aclose()


class _Text:
    """An aiohttp response's body as UTF-8 text, the part of ``httpx.Response`` that ``EventSource`` reads."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.headers = response.headers

    async def aiter_text(self) -> AsyncIterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async for chunk in self.response.content.iter_any():
            text = decoder.decode(chunk)
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail


class _AiohttpOpened:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        return await self.response.read()

    def events(self) -> AsyncGenerator[ServerSentEvent, None]:
        return EventSource(cast(httpx.Response, _Text(self.response))).aiter_sse()

    async def aclose(self) -> None:
        self.response.release()
        await self.response.wait_for_close()


Proxy = tuple[URL, aiohttp.BasicAuth | None]


def env_proxy(url: str) -> Proxy | None:
    """The proxy the environment names for ``url`` (``<scheme>_PROXY``, else ``ALL_PROXY``; none for a host
    that ``NO_PROXY`` lists), and its credentials taken out of its URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    named = proxies.get(parts.scheme) or proxies.get("all")
    if not named:
        return None
    proxy = URL(named if "://" in named else f"http://{named}")
    return proxy.with_user(None), aiohttp.BasicAuth.from_url(proxy)


class AiohttpPool:
    """aiohttp's connection pool, used directly; made on the first call (it belongs to the running loop)."""

    def __init__(self, limits: httpx.Limits, verify: ssl.SSLContext | bool) -> None:
        self.limits = limits
        self.ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, Proxy | None] = {}

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl,
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    async def open(
        self, url: str, content: bytes, headers: dict[str, str], timeout_s: float, first_byte_s: float, connect_s: float
    ) -> Opened:
        session = self._session
        if session is None:
            session = self._session = self._open_session()
        if url not in self._proxies:  # read once per upstream, as httpx reads it once per client
            self._proxies[url] = env_proxy(url)
        proxy = self._proxies[url]
        response = await session.post(
            url,
            data=content,
            headers=headers,
            allow_redirects=False,
            proxy=proxy[0] if proxy else None,
            proxy_auth=proxy[1] if proxy else None,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=first_byte_s, sock_connect=connect_s, sock_read=timeout_s
            ),
        )
        return _AiohttpOpened(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
