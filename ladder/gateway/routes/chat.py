"""``POST /v1/chat/completions`` (OpenAI)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ladder.gateway.cascade import cascade_requested
from ladder.gateway.deps import admitted
from ladder.gateway.protocol import ChatCompletionCreateParams
from ladder.gateway.serving_cascade import create_cascade_completion
from ladder.gateway.serving_chat import create_chat_completion

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    """Route the request, call the chosen model (falling back on failure), answer plain or streamed."""
    gw, ctx, params, raw = await admitted(request, ChatCompletionCreateParams)
    if cascade_requested(gw, ctx, params):
        return await create_cascade_completion(gw, ctx, params, raw, request)
    return await create_chat_completion(gw, ctx, params, raw, request)
