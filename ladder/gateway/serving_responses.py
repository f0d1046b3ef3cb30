"""The logic of ``POST /v1/responses``: a Responses API request routed and answered through chat upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ladder.core.decision_record import Endpoint
from ladder.core.pricing import Usage
from ladder.core.prompt import routed_text
from ladder.gateway.context import RequestContext
from ladder.gateway.costs import answer_cost
from ladder.gateway.dispatch import Dispatched
from ladder.gateway.errors import UpstreamError, openai_error
from ladder.gateway.gateway import Gateway, Routed
from ladder.gateway.json_body import JsonAnswer
from ladder.gateway.protocol import extension, routing_extensions
from ladder.gateway.responses_chat import custom_tool_names, echo, to_chat_body, to_response
from ladder.gateway.responses_protocol import ResponseCreateParams
from ladder.gateway.responses_stream import ResponsesStream
from ladder.gateway.serving_chat import SSE_HEADERS, answer_headers, dispatch, settle
from ladder.gateway.streamed import StreamTally

ENDPOINT: Endpoint = "responses"


async def create_response(
    gw: Gateway, ctx: RequestContext, params: ResponseCreateParams, request: Request
) -> Response:
    tolerance, models = routing_extensions(params)  # type: ignore[arg-type]
    budget = extension(params, "max_latency_ms")
    options = gw.options(ctx, params.model, tolerance, models, request.headers, budget)
    body = to_chat_body(params)
    text = routed_text(body["messages"])
    session = params.prompt_cache_key  # Codex names its conversation here
    routed = await gw.route(ctx, body, text, options, request.headers, session_hint=session)
    dispatched = await dispatch(gw, routed, body, bool(params.stream), request, text, ENDPOINT)
    headers = answer_headers(routed, dispatched)
    response_id = f"resp_{routed.request_id}"
    if params.stream:
        translator = ResponsesStream(echo(params, response_id, dispatched.model.name), custom_tool_names(params))
        stream = response_stream(gw, routed, dispatched, text, translator)
        return StreamingResponse(stream, media_type="text/event-stream", headers={**headers, **SSE_HEADERS})
    completion = dispatched.completion
    response = to_response(completion, params, response_id, dispatched.model.name)
    response.ladder = settle(gw, routed, dispatched, completion, headers, text, ENDPOINT)
    return JsonAnswer(response.model_dump(mode="json"), headers=headers)


async def response_stream(
    gw: Gateway, routed: Routed, dispatched: Dispatched, text: str, translator: ResponsesStream
) -> AsyncIterator[bytes]:
    """The Responses event sequence from the upstream's chunks; a failure ends it with ``response.failed``."""
    tally = StreamTally(routed.needs.input_tokens)
    charged: Usage | None = None  # what the finished stream is charged (the reported usage on a failure)
    error: str | None = None
    yield translator.start()
    try:
        async with aclosing(dispatched.chunks()) as chunks:
            async for chunk in chunks:
                tally.add(chunk)
                out = translator.feed(chunk)
                if out:
                    yield out
        extra: dict[str, Any] = {}
        if tally.usage is None:  # an upstream that ignores stream_options.include_usage: priced as chat streams are
            estimated = tally.estimated_usage()
            translator.input_tokens, translator.output_tokens = estimated.prompt_tokens, estimated.completion_tokens
            extra["usage_estimated"] = True
        charged = tally.charged_usage()
        cost = answer_cost(dispatched.model, gw.baseline, charged).to_dict()
        yield translator.finish({**routed.summary(), "model": dispatched.model.name, **cost, **extra})
    except UpstreamError as exc:
        error = exc.reason
        _, envelope = openai_error(exc)
        yield translator.fail(str(envelope["error"].get("code")), str(envelope["error"].get("message")))
    finally:
        usage = charged or tally.usage
        cost_obj = answer_cost(dispatched.model, gw.baseline, usage) if usage is not None else None
        gw.record(
            routed, ENDPOINT, dispatched, usage, cost_obj, text, error=error, finish_reasons=tally.finish_reasons
        )
