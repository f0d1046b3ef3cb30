"""``POST /v1/chat/completions`` (OpenAI)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ladder.gateway.cascade import cascade_requested, create_cascade_completion
from ladder.gateway.deps import GatewayDep, parse, read_json, require_api_key, within_limits
from ladder.gateway.protocol import ChatCompletionCreateParams
from ladder.gateway.serving_chat import create_chat_completion

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/chat/completions", dependencies=[Depends(within_limits)])
async def chat_completions(request: Request, gw: GatewayDep) -> Response:
    """Route the request, call the chosen model (falling back on failure), answer plain or streamed."""
    raw = await read_json(request, gw.settings.max_body_bytes)
    params = parse(ChatCompletionCreateParams, raw)
    if cascade_requested(gw, params, request.headers):
        return await create_cascade_completion(gw, params, raw, request)
    return await create_chat_completion(gw, params, raw, request)
