"""Pure ASGI middleware: a request id, a structured log line and an audit line per request; a span each."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ladder.core.decision_record import DecisionRecord, Endpoint
from ladder.gateway.audit import AuditLog
from ladder.gateway.batcher import ScoreBatcher
from ladder.gateway.errors import ERROR_STATE, OverloadedError, error_kind, error_response
from ladder.gateway.gateway import REQUEST_ID
from ladder.gateway.logs import REQUEST_LOGGER
from ladder.gateway.metrics import GatewayMetrics
from ladder.gateway.tracing import extract_context

ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/messages": "messages",
    "/v1/responses": "responses",
    "/v1/route": "route",
}
SCORED_PATHS = frozenset(ENDPOINTS)
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REPORTED_HEADERS = {
    "x-ladder-model": "model",
    "x-ladder-routed-model": "routed_model",
    "x-ladder-fallback": "fallback",
    "x-ladder-attempts": "attempts",
}
log = logging.getLogger(REQUEST_LOGGER)


class AdmissionMiddleware:
    """Refuses a request that would be scored (429, Retry-After) before its body is read when the scoring
    queue is already full: under overload a refusal costs the gateway as little as possible."""

    def __init__(self, app: ASGIApp, batcher: ScoreBatcher, metrics: GatewayMetrics) -> None:
        self.app = app
        self.batcher = batcher
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batcher = self.batcher
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in SCORED_PATHS
            and batcher.waiting >= batcher.queue_limit
        ):
            error = OverloadedError(
                f"the gateway is overloaded ({batcher.queue_limit} requests waiting to be routed); "
                f"retry after {batcher.retry_after_s} s",
                batcher.retry_after_s,
            )
            scope.setdefault("state", {})[ERROR_STATE] = (error, None)
            self.metrics.errors.labels("429", str(error_kind(error).code)).inc()
            await error_response(Request(scope), error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RefusalAuditMiddleware:
    """Writes the audit line of a scored request that got no decision (refused under overload, over budget,
    with the scorer down, or with a malformed body), so that every scored request has exactly one line."""

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in SCORED_PATHS or not self.audit.enabled:
            await self.app(scope, receive, send)
            return
        line = self.audit.expect_line()
        status = 499  # the client left before an answer started

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            status = 500
            raise
        finally:
            if not line.written:
                failed = scope.get("state", {}).get(ERROR_STATE)
                kind = error_kind(failed[0]) if failed is not None else None
                self.audit.write(
                    DecisionRecord(
                        request_id=Headers(scope=scope).get("x-ladder-request-id"),
                        endpoint=ENDPOINTS[scope["path"]],
                        chosen_model=None,
                        answered_model=None,
                        status=status,
                        error=kind.code if kind is not None else None,
                    )
                )


class RequestLogMiddleware:
    """Gives every request one id, always generated here (seen by the routes as ``x-ladder-request-id`` and
    returned as such; a client's ``x-request-id`` is logged beside it as a correlation id but never becomes
    the id, so one client cannot name another's stored request) and logs it once answered: status,
    latency, the model that answered, the fallback reasons and the error's exception chain. Never a body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, correlation = _assign_request_id(scope)
        state = scope.setdefault("state", {})
        fields: dict[str, object] = {
            "request_id": request_id,
            **({"correlation_id": correlation} if correlation else {}),
            "method": scope["method"],
            "path": scope["path"],
        }

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                fields["status"] = int(message["status"])
                headers = MutableHeaders(scope=message)
                for header, field in REPORTED_HEADERS.items():
                    if header in headers:
                        fields[field] = headers[header]
                if "x-ladder-request-id" not in headers:
                    headers["x-ladder-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        except asyncio.CancelledError:
            _log(fields.setdefault("status", 499), fields, started, None)
            raise
        except Exception as exc:
            fields["status"] = 500
            _log(500, fields, started, exc)
            raise
        else:
            answered = state.get(ERROR_STATE)
            error: BaseException | None = None
            if answered is not None:
                error, traceback = answered
                error.__traceback__ = error.__traceback__ or traceback
            _log(fields.setdefault("status", 499), fields, started, error)


def _assign_request_id(scope: Scope) -> tuple[str, str | None]:
    """A new id in ``x-ladder-request-id`` (any such header the client sent is dropped), and the client's
    valid ``x-request-id`` as a correlation id."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"x-ladder-request-id"]
    given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
    request_id = os.urandom(16).hex()  # 128 random bits, as uuid4's hex but a quarter of its cost
    scope["headers"] = [*headers, (b"x-ladder-request-id", request_id.encode("latin-1"))]
    return request_id, given if REQUEST_ID.match(given) else None


def _log(status: object, fields: dict[str, object], started: float, exc: BaseException | None) -> None:
    fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    code = int(status) if isinstance(status, int) else 500
    if exc is not None:
        kind = error_kind(exc)
        fields["error"] = {"type": kind.type, "code": kind.code, "exception": type(exc).__name__}
    level = logging.ERROR if code >= 500 else logging.INFO  # a 429 flood must not become a log flood
    if code < 400 and fields["path"] in PROBE_PATHS:
        level = logging.DEBUG  # probes and scrapes every few seconds
    log.log(
        level,
        "%s %s %s",
        fields["method"],
        fields["path"],
        code,
        extra=fields,
        exc_info=exc if exc is not None and code >= 500 else None,
    )


class TracingMiddleware:
    """Wraps each HTTP request (streamed bodies included) in one ``SERVER`` span."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = extract_context(headers)
        method, path = scope["method"], scope["path"]
        token = otel_context.attach(parent)
        try:
            with self.tracer.start_as_current_span(f"{method} {path}", kind=SpanKind.SERVER) as span:
                span.set_attribute("http.request.method", method)
                span.set_attribute("url.path", path)

                async def traced_send(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        status = int(message["status"])
                        span.set_attribute("http.response.status_code", status)
                        if status >= 500:
                            span.set_status(Status(StatusCode.ERROR))
                        for key, value in message.get("headers", ()):
                            if key == b"x-ladder-request-id":
                                span.set_attribute("ladder.request_id", value.decode("latin-1"))
                    await send(message)

                await self.app(scope, receive, traced_send)
        finally:
            otel_context.detach(token)
