"""Per-key limits on requests in flight and streams open at once (``max_concurrent``, ``max_streams``).

Counted in this replica's memory: a request holds its place from the moment it is admitted until its last
byte is sent (a stream until it ends or its client leaves), so the limits are per replica.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ladder.gateway.errors import ERROR_STATE, RateLimitError, error_response
from ladder.gateway.keys import Client, ClientKeys
from ladder.gateway.metrics import GatewayMetrics

ANSWERED_PATHS = frozenset({"/v1/chat/completions", "/v1/messages"})
SLOT = "ladder.inflight"


@dataclass
class Slot:
    """One admitted request's place, and whether it also holds a stream's."""

    client: str
    stream: bool = False


class InFlight:
    """Requests and streams in flight per client key."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        self.requests: Counter[str] = Counter()
        self.streams: Counter[str] = Counter()

    def enter(self, client: Client) -> Slot:
        limit = client.profile.max_concurrent if client.profile is not None else None
        self._take(self.requests, client.name, limit, "concurrency", "requests in flight")
        return Slot(client.name)

    def open_stream(self, request: Request, client: Client | None) -> None:
        """Count the request's stream (before any upstream call); 429 past the key's ``max_streams``."""
        slot = request.scope.get("state", {}).get(SLOT)
        limit = client.profile.max_streams if client is not None and client.profile is not None else None
        if slot is None or limit is None or slot.stream:
            return
        self._take(self.streams, slot.client, limit, "streams", "streams open")
        slot.stream = True

    def _take(self, counter: Counter[str], client: str, limit: int | None, reason: str, what: str) -> None:
        """Count one more of ``what`` for ``client``; 429 (a rejection for ``reason``) when it has ``limit``."""
        if limit is not None and counter[client] >= limit:
            raise self.metrics.refusal(
                client,
                reason,
                f"client key {client!r} has {limit} {what}, its limit; retry when one ends",
                retry_after_s=1,
                code="concurrency_limit_exceeded",
            )
        counter[client] += 1

    def leave(self, slot: Slot) -> None:
        self.requests[slot.client] -= 1
        if slot.stream:
            self.streams[slot.client] -= 1
        for counter in (self.requests, self.streams):
            if counter[slot.client] <= 0:
                del counter[slot.client]


class InFlightMiddleware:
    """Admits a chat or messages request within its key's ``max_concurrent`` (429 otherwise) and holds
    its place until the response, streamed or not, has been sent or abandoned."""

    def __init__(self, app: ASGIApp, inflight: InFlight, clients: ClientKeys) -> None:
        self.app = app
        self.inflight = inflight
        self.clients = clients
        self.enabled = any(  # no key with such limits: nothing to count (no second key lookup per request)
            c.profile is not None and (c.profile.max_concurrent or c.profile.max_streams)
            for c in clients.clients.values()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in ANSWERED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        client = self.clients.identify(request.headers)
        profile = client.profile if client is not None else None
        if client is None or profile is None or (profile.max_concurrent is None and profile.max_streams is None):
            await self.app(scope, receive, send)
            return
        try:
            slot = self.inflight.enter(client)
        except RateLimitError as error:
            scope.setdefault("state", {})[ERROR_STATE] = (error, None)
            await error_response(request, error)(scope, receive, send)
            return
        scope.setdefault("state", {})[SLOT] = slot
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight.leave(slot)
