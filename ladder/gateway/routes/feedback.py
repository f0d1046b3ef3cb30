"""``POST /v1/feedback``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ladder.gateway.deps import GatewayDep, parse, read_json, require_api_key
from ladder.gateway.feedback import FeedbackCreateParams, create_feedback

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/feedback")
async def feedback(request: Request, gw: GatewayDep) -> dict[str, Any]:
    """A client's outcome (thumbs or score) for the answer to one request id."""
    raw = await read_json(request, gw.settings.max_body_bytes)
    return await create_feedback(gw, parse(FeedbackCreateParams, raw))
