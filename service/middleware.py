"""Pure ASGI middleware: a server span per request, joined to the caller's W3C trace context."""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.tracing import extract_context


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
