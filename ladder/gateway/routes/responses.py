"""``POST /v1/responses`` (OpenAI Responses API)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ladder.gateway.deps import admit, parse, read_json
from ladder.gateway.responses_protocol import ResponseCreateParams
from ladder.gateway.serving_responses import create_response

router = APIRouter()


@router.post("/v1/responses")
async def responses(request: Request) -> Response:
    """The Responses API, translated to chat completions and routed like them."""
    gw, client = await admit(request)
    raw = await read_json(request, gw.settings.max_body_bytes)
    params = parse(ResponseCreateParams, raw)
    return await create_response(gw, gw.context(client, request.headers, raw), params, request)
