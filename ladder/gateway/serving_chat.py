"""The logic of ``POST /v1/chat/completions``: route, dispatch with fallback, answer plain or streamed."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ladder.core.decision_record import Endpoint
from ladder.core.prompt import routed_text
from ladder.core.upstream_replies import Completion
from ladder.gateway.context import RequestContext
from ladder.gateway.costs import answer_cost
from ladder.gateway.disconnect import cancel_on_disconnect
from ladder.gateway.dispatch import Dispatched
from ladder.gateway.errors import REQUEST_FAILURES, UpstreamError, sse_error_event
from ladder.gateway.gateway import Gateway, Routed
from ladder.gateway.json_body import JsonAnswer
from ladder.gateway.protocol import ChatCompletionCreateParams, extension, forwarded_body, routing_extensions
from ladder.gateway.sse import data_event
from ladder.gateway.stream_deadline import within_deadline
from ladder.gateway.streamed import StreamTally

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def answer_headers(routed: Routed, dispatched: Dispatched) -> dict[str, str]:
    headers = routed.headers()
    headers["x-ladder-model"] = dispatched.model.name
    fallback = dispatched.fallback_header()
    if fallback:
        headers["x-ladder-fallback"] = fallback
    headers["x-ladder-attempts"] = str(len(dispatched.attempts))
    return headers


async def route_chat(
    gw: Gateway,
    ctx: RequestContext,
    params: ChatCompletionCreateParams,
    raw: dict[str, Any],
    request: Request,
) -> tuple[Routed, dict[str, Any], str]:
    """The routing step shared by chat completions and messages: options, text, decision."""
    tolerance, models = routing_extensions(params)
    budget = extension(params, "max_latency_ms")
    options = gw.options(ctx, params.model, tolerance, models, request.headers, budget)
    body = forwarded_body(raw)
    text = routed_text(body["messages"])
    routed = await gw.route(ctx, body, text, options, request.headers)
    return routed, body, text


async def dispatch(
    gw: Gateway,
    routed: Routed,
    body: dict[str, Any],
    stream: bool,
    request: Request,
    text: str,
    endpoint: Endpoint,
) -> Dispatched:
    """Hold the worst case of the models the request may reach against the client's budget, then send along
    the decision's fallback order (the dispatcher keeps to those models and charges each paid attempt to the
    hold); a failure is recorded (and the hold released) before it propagates."""
    order = [gw.pool.model(name) for name in routed.decision.fallback_order]
    try:
        if stream:
            gw.inflight.open_stream(request, routed.client)
        await gw.reserve(routed, gw.dispatcher.permitted(routed.ctx, order), body)
        return await cancel_on_disconnect(request, gw.dispatcher.send(routed.ctx, order, body, stream))
    except REQUEST_FAILURES as exc:
        gw.record(routed, endpoint, None, None, None, text, error=type(exc).__name__)
        raise
    except BaseException:
        gw.release(routed)
        raise


def stream_deadline(gw: Gateway) -> float:
    """When a stream starting now must have ended (``time.monotonic()``)."""
    return time.monotonic() + (gw.settings.stream_deadline_s or gw.settings.deadline_s)


async def create_chat_completion(
    gw: Gateway,
    ctx: RequestContext,
    params: ChatCompletionCreateParams,
    raw: dict[str, Any],
    request: Request,
) -> Response:
    routed, body, text = await route_chat(gw, ctx, params, raw, request)
    dispatched = await dispatch(gw, routed, body, bool(params.stream), request, text, "chat")
    headers = answer_headers(routed, dispatched)
    if params.stream:
        wants_usage = bool((params.stream_options or {}).get("include_usage"))
        stream = chat_stream(gw, routed, dispatched, wants_usage, text)
        return StreamingResponse(stream, media_type="text/event-stream", headers={**headers, **SSE_HEADERS})
    completion = dispatched.completion
    data = {**completion.raw, "model": dispatched.model.name}
    data["ladder"] = settle(gw, routed, dispatched, completion, headers, text, "chat")
    if gw.shadow is not None:
        gw.shadow.offer(routed.ctx, body, text, dispatched.model, completion)
    return JsonAnswer(data, headers=headers)


def settle(
    gw: Gateway,
    routed: Routed,
    dispatched: Dispatched,
    completion: Completion,
    headers: dict[str, str],
    text: str,
    endpoint: Endpoint,
) -> dict[str, Any]:
    """Price a plain answer, add the cost headers, record it, and return the body's ``ladder`` object."""
    usage = completion.usage
    cost = answer_cost(dispatched.model, gw.baseline, usage) if usage is not None else None
    if cost is not None:
        headers["x-ladder-cost-usd"] = f"{cost.cost_usd:.8f}"
        headers["x-ladder-baseline-cost-usd"] = f"{cost.baseline_cost_usd:.8f}"
    gw.record(
        routed,
        endpoint,
        dispatched,
        usage,
        cost,
        text,
        response_id=completion.id,
        finish_reasons=completion.finish_reasons,
    )
    return {
        **routed.summary(),
        "model": dispatched.model.name,
        **(cost.to_dict() if cost is not None else {}),
        "fallback": [a.to_dict() for a in dispatched.failures],
    }


async def chat_stream(
    gw: Gateway, routed: Routed, dispatched: Dispatched, wants_usage: bool, text: str
) -> AsyncIterator[bytes]:
    """Relay the upstream's chunks with ``model`` rewritten; a failure ends the stream with an error event."""
    name = dispatched.model.name
    tally = StreamTally(routed.needs.input_tokens)
    error: str | None = None
    deadline = stream_deadline(gw)
    try:
        async with aclosing(within_deadline(dispatched.chunks(), deadline, name)) as chunks:
            async for chunk in chunks:
                tally.add(chunk)
                out = {**chunk.raw, "model": name}
                if chunk.usage is not None:
                    if not chunk.choices:
                        if wants_usage:
                            out["ladder"] = answer_cost(dispatched.model, gw.baseline, chunk.usage).to_dict()
                            yield data_event(out)
                        continue
                    if not wants_usage:
                        del out["usage"]
                yield data_event(out)
        if tally.usage is None:  # an upstream that ignores stream_options.include_usage (llama.cpp does)
            estimated = answer_cost(dispatched.model, gw.baseline, tally.estimated_usage()).to_dict()
            cost = {**estimated, "usage_estimated": True}
            yield f": ladder {json.dumps(cost, separators=(',', ':'))}\n\n".encode()
        elif not wants_usage:
            cost = answer_cost(dispatched.model, gw.baseline, tally.usage).to_dict()
            yield f": ladder {json.dumps(cost, separators=(',', ':'))}\n\n".encode()
        yield data_event("[DONE]")
    except UpstreamError as exc:
        error = exc.reason
        yield sse_error_event(exc)
    finally:  # a stream that broke off or that the client left is charged what was generated
        usage = tally.charged_usage()
        cost_obj = answer_cost(dispatched.model, gw.baseline, usage)
        gw.record(
            routed, "chat", dispatched, usage, cost_obj, text, error=error, finish_reasons=tally.finish_reasons
        )
