"""The logic of ``POST /v1/feedback``: a client's outcome for one request, stored with its decision."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ladder.core.traffic_db import THUMBS, OutcomeRow, rated_model
from ladder.gateway.errors import InvalidRequestError, RequestNotFoundError
from ladder.gateway.gateway import REQUEST_ID, Gateway
from ladder.gateway.traffic_store import now

MAX_COMMENT = 4000


class FeedbackCreateParams(BaseModel):
    """Thumbs up/down, or a score in [0, 1], for the answer to ``request_id``."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(pattern=REQUEST_ID.pattern)
    thumbs: Literal["up", "down"] | None = None
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)

    @model_validator(mode="after")
    def _one_outcome(self) -> FeedbackCreateParams:
        if (self.thumbs is None) == (self.score is None):
            raise ValueError("send exactly one of 'thumbs' (\"up\" or \"down\") and 'score' (0 to 1)")
        if self.score is not None and not math.isfinite(self.score):
            raise ValueError("score must be a finite number from 0 to 1")
        return self

    @property
    def label(self) -> float:
        return THUMBS[self.thumbs] if self.thumbs is not None else float(self.score or 0.0)


async def create_feedback(gw: Gateway, params: FeedbackCreateParams) -> dict[str, Any]:
    """Store the outcome against the decision; 404 for a request this gateway never recorded."""
    store = gw.traffic
    if store is None:
        raise RequestNotFoundError(
            "feedback is not enabled on this gateway: set traffic_db (LADDER_TRAFFIC_DB)", "request_id"
        )
    found = await store.call(lambda db: db.decision(params.request_id))
    if found is None:
        raise RequestNotFoundError(f"no request with id {params.request_id!r}", "request_id")
    model = rated_model(found.record)
    if model is None:
        raise InvalidRequestError(
            f"request {params.request_id!r} failed before any model answered: there is nothing to rate",
            "request_id",
        )
    comment = gw.audit.redact(params.comment) if params.comment else None
    source = "thumbs" if params.thumbs is not None else "score"
    outcome = OutcomeRow(params.request_id, now(), model, params.label, f"feedback:{source}", comment)
    await store.add_outcome(outcome)
    return {
        "object": "feedback",
        "request_id": params.request_id,
        "model": model,
        "label": params.label,
        "created": outcome.time,
    }
