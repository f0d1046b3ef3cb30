"""The decision record: one versioned type for the audit line and the stored decision, written and read alike.

The gateway writes one per scored request (``ladder.gateway.audit`` appends it to the audit log as a JSON
line, ``ladder.gateway.traffic_store`` keeps it in the traffic database); ``ladder report`` and
``ladder export-traffic`` read it back. The JSON keys are the audit log's since its first version, so audit
files written before ``record_version`` existed read as version 1.

Versioning: ``record_version`` names the schema. Adding, renaming or retyping a field is a new version; a
reader refuses a version it does not know (a newer Ladder wrote it) instead of misreading it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ladder.core.errors import DataError
from ladder.core.policy import PolicyName

RECORD_VERSION: Literal[1] = 1
Endpoint = Literal["chat", "messages", "responses", "route"]
SessionStatus = Literal["new", "kept", "moved"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenCounts(_Part):
    """The tokens an answer used, as its upstream reported them (or as estimated for a stream)."""

    prompt: int
    completion: int


class FailedAttempt(_Part):
    """A model that was tried before the one that answered, and how the try ended."""

    model: str
    outcome: str
    ms: float


class CascadeStage(_Part):
    """One upstream answer in a cascade and what the acceptance rule made of it (signals: absent where
    the stage was not judged)."""

    model: str
    role: str  # "answer" or "second opinion"
    router_p: float | None = None
    mean_logprob: float | None = None
    agrees: bool | None = None
    router_gap: float | None = None
    accepted: bool | None
    reason: str | None
    usage: TokenCounts | None
    cost_usd: float | None
    ms: float
    fallback: list[FailedAttempt]


class CascadeRecord(_Part):
    """A cascade's stages, in the order they ran, and the model whose answer was returned."""

    stages: list[CascadeStage]
    accepted: str


class DecisionRecord(_Part):
    """What the gateway decided for one request, what answered and what it cost.

    A request refused before any decision (overload, budget, scorer down, malformed body) has a record too:
    ``chosen_model`` is None and ``status`` holds the HTTP status; the decision's fields are then absent.
    ``to_line`` leaves out the fields a writer did not set, so such a line holds only what is known.
    """

    record_version: Literal[1] = RECORD_VERSION
    request_id: str | None
    correlation_id: str | None = None  # the client's own ``x-request-id``, kept beside the server's id
    endpoint: Endpoint | None
    chosen_model: str | None  # the model the router chose (the response's ``routed_model``)
    answered_model: str | None = None  # the one that answered (another after a fallback); None: none did
    policy: PolicyName | None = None
    tolerance: float | None = None
    threshold: float | None = None
    p_correct: dict[str, float] | None = None  # per scored model; None: no decision was made
    expected_cost_usd: dict[str, float] | None = None  # per scored model
    excluded: dict[str, str] | None = None  # model -> why it could not be chosen
    sensitive: bool | None = None
    sensitive_because: str | None = None
    usage: TokenCounts | None = None
    cost_usd: float | None = None
    baseline_model: str | None = None
    baseline_cost_usd: float | None = None
    savings_usd: float | None = None
    fallback: list[FailedAttempt] | None = None
    routing_ms: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    client: str | None = None  # the client key's profile name, never the key
    session: SessionStatus | None = None
    cascade: CascadeRecord | None = None
    status: int | None = None  # the HTTP status of a request refused before any decision

    @model_validator(mode="before")
    @classmethod
    def _known_version(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "record_version" in data:
            version = data["record_version"]
            if version != RECORD_VERSION:
                newer = isinstance(version, int) and not isinstance(version, bool) and version > RECORD_VERSION
                raise ValueError(
                    f"record_version {version!r} was written by a newer Ladder: this one reads version "
                    f"{RECORD_VERSION}; upgrade Ladder to read it"
                    if newer
                    else f"unknown record_version {version!r}: this Ladder reads version {RECORD_VERSION}"
                )
        return data

    @classmethod
    def parse(cls, data: object, where: str) -> DecisionRecord:
        """``model_validate``, with a failure turned into a ``DataError`` that names ``where`` (file and line,
        or the database row) and each field at fault."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise DataError(f"{where}: not a Ladder decision record: {_problems(exc)}") from exc

    @property
    def decided(self) -> bool:
        """Whether the request was scored and routed (a refused request's record was not)."""
        return self.p_correct is not None

    @property
    def rated_model(self) -> str | None:
        """The model whose answer the client saw: the one that answered, or for ``/v1/route`` the chosen
        one."""
        if self.answered_model:
            return self.answered_model
        if self.endpoint == "route" and self.chosen_model:
            return self.chosen_model
        return None

    def to_line(self) -> dict[str, Any]:
        """The record as the JSON object the audit log and the traffic database hold (the version first)."""
        return {"record_version": self.record_version, **self.model_dump(mode="json", exclude_unset=True)}


def _problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
