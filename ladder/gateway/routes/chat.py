"""``POST /v1/chat/completions`` (OpenAI)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ladder.gateway.cascade import cascade_requested
from ladder.gateway.deps import ClientDep, GatewayDep, parse, read_json, require_api_key, within_limits
from ladder.gateway.protocol import ChatCompletionCreateParams
from ladder.gateway.serving_cascade import create_cascade_completion
from ladder.gateway.serving_chat import create_chat_completion

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/chat/completions", dependencies=[Depends(within_limits)])
async def chat_completions(request: Request, gw: GatewayDep, client: ClientDep) -> Response:
    """Route the request, call the chosen model (falling back on failure), answer plain or streamed."""
    raw = await read_json(request, gw.settings.max_body_bytes)
    params = parse(ChatCompletionCreateParams, raw)
    ctx = gw.context(client, request.headers, raw)
    if cascade_requested(gw, ctx, params):
        return await create_cascade_completion(gw, ctx, params, raw, request)
    return await create_chat_completion(gw, ctx, params, raw, request)
