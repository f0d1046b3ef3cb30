"""``POST /v1/responses`` (OpenAI Responses API)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ladder.gateway.deps import ClientDep, GatewayDep, parse, read_json, require_api_key, within_limits
from ladder.gateway.responses_protocol import ResponseCreateParams
from ladder.gateway.serving_responses import create_response

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/responses", dependencies=[Depends(within_limits)])
async def responses(request: Request, gw: GatewayDep, client: ClientDep) -> Response:
    """The Responses API, translated to chat completions and routed like them."""
    raw = await read_json(request, gw.settings.max_body_bytes)
    params = parse(ResponseCreateParams, raw)
    return await create_response(gw, gw.context(client, request.headers, raw), params, request)
