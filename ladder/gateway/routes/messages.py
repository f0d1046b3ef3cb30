"""``POST /v1/messages`` (Anthropic)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ladder.gateway.anthropic_protocol import MessageCreateParams, to_chat_body
from ladder.gateway.capabilities import prompt_tokens
from ladder.gateway.deps import GatewayDep, admitted, parse, read_json, require_api_key
from ladder.gateway.serving_messages import create_message

router = APIRouter()


@router.post("/v1/messages/count_tokens", dependencies=[Depends(require_api_key)])
async def count_tokens(request: Request, gw: GatewayDep) -> dict[str, int]:
    """An estimate of the request's input tokens (what the gateway prices and checks windows with)."""
    params = parse(MessageCreateParams, {"max_tokens": 1, **await read_json(request, gw.settings.max_body_bytes)})
    return {"input_tokens": prompt_tokens(to_chat_body(params))}


@router.post("/v1/messages")
async def messages(request: Request) -> Response:
    """The Anthropic Messages API, routed like chat completions."""
    gw, ctx, params, _ = await admitted(request, MessageCreateParams)
    return await create_message(gw, ctx, params, request)
