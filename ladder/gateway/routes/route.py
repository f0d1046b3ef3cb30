"""``POST /v1/route`` and ``GET /v1/models``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ladder.gateway.deps import GatewayDep, admitted, require_api_key
from ladder.gateway.protocol import ModelList, RouteRequest
from ladder.gateway.serving_route import create_route, list_models

router = APIRouter()


@router.post("/v1/route")
async def route(request: Request) -> dict[str, Any]:
    """The routing decision for a chat request or a prompt; no upstream is called."""
    gw, ctx, params, raw = await admitted(request, RouteRequest, spends=False)
    return await create_route(gw, ctx, params, raw, request)


@router.get("/v1/models", dependencies=[Depends(require_api_key)])
async def models(gw: GatewayDep) -> ModelList:
    """The policies and the pool."""
    return list_models(gw)
