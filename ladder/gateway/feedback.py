"""The logic of ``POST /v1/feedback``: a client's outcome for one of its own requests, once, at a rate."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ladder.core.traffic_db import THUMBS, OutcomeRow, TrafficDB
from ladder.gateway.errors import (
    FeedbackConflictError,
    InvalidRequestError,
    RequestNotFoundError,
)
from ladder.gateway.gateway import REQUEST_ID, Gateway
from ladder.gateway.keys import Client
from ladder.gateway.state import StateError
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


async def throttle(gw: Gateway, client: Client) -> None:
    """429 past ``feedback_per_minute`` for this key (feedback feeds retraining: it must not be flooded)."""
    per_minute = gw.settings.feedback_per_minute
    try:
        wait_s = await gw.state.throttle(f"{gw.settings.redis_prefix}feedback:{client.name}", per_minute)
    except StateError as exc:
        gw.limits.failed("feedback rate limit", exc)
        wait_s = 0.0
    if wait_s > 0:
        raise gw.metrics.refusal(
            client.name,
            "feedback_rate_limit",
            f"client key {client.name!r} is over its feedback limit of {per_minute} per minute; "
            f"retry in {wait_s:.1f} s",
            retry_after_s=wait_s,
        )


async def create_feedback(gw: Gateway, params: FeedbackCreateParams, client: Client) -> dict[str, Any]:
    """Store the outcome against the decision; 404 for a request this gateway never recorded for this
    client key (another key's request is not found either), 409 when it was rated already."""
    store = gw.traffic
    if store is None:
        raise RequestNotFoundError(
            "feedback is not enabled on this gateway: set traffic_db (LADDER_TRAFFIC_DB)", "request_id"
        )
    await throttle(gw, client)
    found = await store.call(lambda db: db.decision(params.request_id))
    if found is None or found.record.client != client.name:
        raise RequestNotFoundError(f"no request with id {params.request_id!r}", "request_id")
    model = found.record.rated_model
    if model is None:
        raise InvalidRequestError(
            f"request {params.request_id!r} failed before any model answered: there is nothing to rate",
            "request_id",
        )
    comment = gw.audit.redact(params.comment) if params.comment else None
    source = "thumbs" if params.thumbs is not None else "score"
    outcome = OutcomeRow(params.request_id, now(), model, params.label, f"feedback:{source}", comment)

    def add_once(db: TrafficDB) -> bool:  # on the store's one writer thread: the check and the write at once
        rated = db.has_outcome(params.request_id, "feedback:")
        if not rated:
            db.add_outcome(outcome)
        return not rated

    if not await store.call(add_once):
        raise FeedbackConflictError(
            f"request {params.request_id!r} has feedback already: a request is rated once", "request_id"
        )
    return {
        "object": "feedback",
        "request_id": params.request_id,
        "model": model,
        "label": params.label,
        "created": outcome.time,
    }
