"""The logic of ``POST /v1/messages``: an Anthropic request routed and answered through chat upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ladder.core.prompt import routed_text
from ladder.gateway.anthropic_protocol import MessageCreateParams, to_chat_body, to_message
from ladder.gateway.anthropic_stream import AnthropicStream
from ladder.gateway.context import RequestContext
from ladder.gateway.costs import answer_cost
from ladder.gateway.dispatch import Dispatched
from ladder.gateway.errors import UpstreamError, sse_error_event
from ladder.gateway.gateway import Gateway, Routed
from ladder.gateway.json_body import JsonAnswer
from ladder.gateway.protocol import routing_extensions
from ladder.gateway.serving_chat import (
    SSE_HEADERS,
    answer_headers,
    dispatch,
    settle,
    stream_deadline,
)
from ladder.gateway.stream_deadline import within_deadline
from ladder.gateway.streamed import StreamTally


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
    completion = dispatched.completion
    message = to_message(completion, dispatched.model.name)
    message["ladder"] = settle(gw, routed, dispatched, completion, headers, text, "messages")
    return JsonAnswer(message, headers=headers)


async def message_stream(
    gw: Gateway, routed: Routed, dispatched: Dispatched, text: str
) -> AsyncIterator[bytes]:
    """Anthropic's event sequence from the upstream's chunks; a failure ends it with an ``error`` event."""
    name = dispatched.model.name
    translator = AnthropicStream(f"msg_{routed.request_id}", name)
    tally = StreamTally(routed.needs.input_tokens)
    error: str | None = None
    deadline = stream_deadline(gw)
    try:
        yield translator.start()
        async with aclosing(within_deadline(dispatched.chunks(), deadline, name)) as chunks:
            async for chunk in chunks:
                tally.add(chunk)
                out = translator.feed(chunk)
                if out:
                    yield out
        extra = {} if tally.usage is not None else {"usage_estimated": True}  # priced as chat streams are
        cost = answer_cost(dispatched.model, gw.baseline, tally.charged_usage())
        yield translator.finish({**cost.to_dict(), **extra})
    except UpstreamError as exc:
        error = exc.reason
        yield sse_error_event(exc, anthropic=True)
    finally:  # a stream that broke off or that the client left is charged what was generated
        usage = tally.charged_usage()
        cost = answer_cost(dispatched.model, gw.baseline, usage)
        gw.record(
            routed, "messages", dispatched, usage, cost, text, error=error, finish_reasons=tally.finish_reasons
        )
