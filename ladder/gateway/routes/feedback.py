"""``POST /v1/feedback``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ladder.gateway.deps import ClientDep, GatewayDep, parse, read_json
from ladder.gateway.feedback import FeedbackCreateParams, create_feedback

router = APIRouter()


@router.post("/v1/feedback")
async def feedback(request: Request, gw: GatewayDep, client: ClientDep) -> dict[str, Any]:
    """A client's outcome (thumbs or score) for the answer to one of its own request ids."""
    raw = await read_json(request, gw.settings.max_body_bytes)
    return await create_feedback(gw, parse(FeedbackCreateParams, raw), client)
