"""The logic of ``POST /v1/messages``: an Anthropic request routed and answered through chat upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ladder.core.pricing import Usage
from ladder.core.prompt import routed_text
from ladder.gateway.anthropic_protocol import MessageCreateParams, to_chat_body, to_message
from ladder.gateway.anthropic_stream import AnthropicStream
from ladder.gateway.context import RequestContext
from ladder.gateway.costs import answer_cost, chunk_text, estimated_usage
from ladder.gateway.dispatch import Dispatched
from ladder.gateway.errors import UpstreamError, sse_error_event
from ladder.gateway.gateway import Gateway, Routed
from ladder.gateway.protocol import routing_extensions
from ladder.gateway.serving_chat import (
    SSE_HEADERS,
    answer_headers,
    dispatch,
    reply_json,
    settle,
    stream_deadline,
)
from ladder.gateway.stream_deadline import within_deadline
from ladder.gateway.tracing import finished_choices


async def create_message(
    gw: Gateway, ctx: RequestContext, params: MessageCreateParams, request: Request
) -> Response:
    tolerance, models = routing_extensions(params)  # type: ignore[arg-type]
    options = gw.options(ctx, params.model, tolerance, models, request.headers)
    body = to_chat_body(params)
    text = routed_text(body["messages"])
    session = (params.metadata or {}).get("user_id")  # Claude Code names its session here
    hint = str(session or "") or None
    routed = await gw.route(ctx, body, text, options, request.headers, session_hint=hint)
    dispatched = await dispatch(gw, routed, body, bool(params.stream), request, text, "messages")
    headers = answer_headers(routed, dispatched)
    if params.stream:
        stream = message_stream(gw, routed, dispatched, text)
        return StreamingResponse(stream, media_type="text/event-stream", headers={**headers, **SSE_HEADERS})
    completion = reply_json(dispatched)
    message = to_message(completion, dispatched.model.name)
    message["ladder"] = settle(gw, routed, dispatched, completion, headers, text, "messages")
    return JSONResponse(message, headers=headers)


async def message_stream(
    gw: Gateway, routed: Routed, dispatched: Dispatched, text: str
) -> AsyncIterator[bytes]:
    """Anthropic's event sequence from the upstream's chunks; a failure ends it with an ``error`` event."""
    name = dispatched.model.name
    translator = AnthropicStream(f"msg_{routed.request_id}", name)
    usage: Usage | None = None
    error: str | None = None
    streamed: list[str] = []
    finished: list[Mapping[str, Any]] = []  # choices that ended, for the span's finish reasons
    deadline = stream_deadline(gw)
    try:
        yield translator.start()
        async with aclosing(within_deadline(dispatched.chunks(), deadline, name)) as chunks:
            async for chunk in chunks:
                usage = Usage.from_openai(chunk.get("usage")) or usage
                streamed.extend(chunk_text(chunk))
                finished.extend(finished_choices(chunk))
                out = translator.feed(chunk)
                if out:
                    yield out
        extra = {}
        if usage is None:  # an upstream that ignores stream_options.include_usage: priced as chat streams are
            usage = estimated_usage(routed.needs.input_tokens, "".join(streamed))
            extra["usage_estimated"] = True
        yield translator.finish({**answer_cost(dispatched.model, gw.baseline, usage).to_dict(), **extra})
    except UpstreamError as exc:
        error = exc.reason
        yield sse_error_event(exc, anthropic=True)
    finally:  # a stream that broke off or that the client left is charged what was generated
        usage = usage or estimated_usage(routed.needs.input_tokens, "".join(streamed))
        cost = answer_cost(dispatched.model, gw.baseline, usage)
        gw.record(routed, "messages", dispatched, usage, cost, text, error=error, reply={"choices": finished})
