"""The logic of ``POST /v1/route`` (a decision without an upstream call) and ``GET /v1/models``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ladder.core.prompt import routed_text
from ladder.gateway.context import RequestContext
from ladder.gateway.errors import InvalidRequestError
from ladder.gateway.gateway import Gateway
from ladder.gateway.protocol import (
    Model,
    ModelList,
    RouteRequest,
    extension,
    forwarded_body,
    routing_extensions,
)


async def create_route(
    gw: Gateway, ctx: RequestContext, params: RouteRequest, raw: dict[str, Any], request: Request
) -> dict[str, Any]:
    tolerance, models = routing_extensions(params)
    budget = extension(params, "max_latency_ms")
    options = gw.options(ctx, params.model, tolerance, models, request.headers, budget)
    body = forwarded_body(raw)
    if params.messages is None:
        if params.prompt is None:
            raise InvalidRequestError("send 'messages' (chat format) or 'prompt' (text)", "messages")
        body["messages"] = [{"role": "user", "content": params.prompt}]
    text = routed_text(body["messages"])
    routed = await gw.route(ctx, body, text, options, request.headers, pin_session=False)
    gw.record(routed, "route", None, None, None, text)
    decision = routed.decision
    costs = {c.name: c.expected_cost_usd for c in decision.candidates}
    baseline_cost = costs[gw.baseline.name]
    return {
        "id": routed.request_id,
        "object": "ladder.route",
        "model": decision.model,
        **routed.summary(),
        "candidates": decision.to_dict()["candidates"],
        "requirements": routed.needs.to_dict(),
        "baseline_model": gw.baseline.name,
        "baseline_expected_cost_usd": baseline_cost,
        "expected_savings_usd": baseline_cost - costs[decision.model],
    }


def list_models(gw: Gateway) -> ModelList:
    """The routing policy (and its tolerance form), then every pool model that can be pinned."""
    routing = gw.pool.routing
    name = gw.settings.policy_name
    data = [
        Model(
            id=name,
            owned_by="ladder",
            ladder={
                "kind": "policy",
                "policy": routing.policy.value,
                "tolerance": routing.tolerance,
                "usage": f"'{name}' routes; '{name}-0.1' sets the tolerance",
            },
        ),
    ]
    for m in gw.pool.models:
        data.append(
            Model(
                id=m.name,
                owned_by=m.locality.value,
                ladder={
                    "kind": "model",
                    "capabilities": sorted(c.value for c in m.capabilities),
                    "context_window": m.context_window,
                    "locality": m.locality.value,
                    "price": m.price.model_dump(),
                    "latency": gw.latency.describe(m.name),
                },
            )
        )
    return ModelList(data=data)
