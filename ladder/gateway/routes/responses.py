"""``POST /v1/responses`` (OpenAI Responses API)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ladder.gateway.deps import admitted
from ladder.gateway.responses_protocol import ResponseCreateParams
from ladder.gateway.serving_responses import create_response

router = APIRouter()


@router.post("/v1/responses")
async def responses(request: Request) -> Response:
    """The Responses API, translated to chat completions and routed like them."""
    gw, ctx, params, _ = await admitted(request, ResponseCreateParams)
    return await create_response(gw, ctx, params, request)
