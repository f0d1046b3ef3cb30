"""``POST /v1/route`` and ``GET /v1/models``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ladder.gateway.deps import ClientDep, GatewayDep, parse, read_json, require_api_key, within_rate_limit
from ladder.gateway.protocol import ModelList, RouteRequest
from ladder.gateway.serving_route import create_route, list_models

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/route", dependencies=[Depends(within_rate_limit)])
async def route(request: Request, gw: GatewayDep, client: ClientDep) -> dict[str, Any]:
    """The routing decision for a chat request or a prompt; no upstream is called."""
    raw = await read_json(request, gw.settings.max_body_bytes)
    params = parse(RouteRequest, raw)
    return await create_route(gw, gw.context(client, request.headers, raw), params, raw, request)


@router.get("/v1/models")
async def models(gw: GatewayDep) -> ModelList:
    """The policies and the pool."""
    return list_models(gw)
