"""OpenAI-compatible request and response models, named like OpenAI's types; unknown fields pass through."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ROUTING_EXTENSIONS = ("tolerance", "models", "max_latency_ms", "cascade")
RESERVED_FIELDS = ("model", "messages", "stream")  # what ``extra_body`` may not override


class Passthrough(BaseModel):
    """A protocol object that checks the fields Ladder reads and keeps every other field as sent."""

    model_config = ConfigDict(extra="allow")


class ChatCompletionMessageParam(Passthrough):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any] | str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class RoutingFields(BaseModel):
    """Ladder's request extensions (``ROUTING_EXTENSIONS``), each checked where it is sent."""

    tolerance: float | None = Field(default=None, ge=0, le=1)
    models: list[str] | None = Field(default=None, min_length=1)
    max_latency_ms: float | None = Field(default=None, gt=0)
    cascade: bool | None = None


class RoutingExtensions(RoutingFields):
    """Ladder's request extensions, at the top level or inside ``extra_body`` (with other fields to merge)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _no_reserved_fields(self) -> RoutingExtensions:
        taken = [k for k in RESERVED_FIELDS if k in (self.model_extra or {})]
        if taken:
            raise ValueError(f"extra_body may not set {', '.join(taken)}: send it at the top level")
        return self


class MergesExtraBody(Passthrough):
    """A request whose ``extra_body`` fields are merged into the top level: they are validated as if sent
    there, so the body that is forwarded is the body that was checked."""

    @model_validator(mode="before")
    @classmethod
    def _merge_extra_body(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("extra_body"), dict):
            return data
        skip = (*ROUTING_EXTENSIONS, *RESERVED_FIELDS, "extra_body")
        merged = {k: v for k, v in data["extra_body"].items() if k in cls.model_fields and k not in skip}
        return {**data, **merged}


class RoutedRequest(MergesExtraBody, RoutingFields):
    """A request Ladder routes: the extensions at the top level or in ``extra_body``."""

    extra_body: RoutingExtensions | None = None


class ChatCompletionCreateParams(RoutedRequest):
    model: str = Field(min_length=1)
    messages: list[ChatCompletionMessageParam] = Field(min_length=1)
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    functions: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None


class RouteRequest(RoutedRequest):
    """``POST /v1/route``: a chat request (or a bare prompt) to decide on, without calling any upstream."""

    model: str = "ladder"
    messages: list[ChatCompletionMessageParam] | None = Field(default=None, min_length=1)
    prompt: str | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None


class Model(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    ladder: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


def forwarded_body(raw: dict[str, Any]) -> dict[str, Any]:
    """The client's body minus Ladder's routing extensions (``extra_body`` merged into the top level)."""
    body = {k: v for k, v in raw.items() if k not in ROUTING_EXTENSIONS and k != "extra_body"}
    extra = raw.get("extra_body")
    if isinstance(extra, dict):
        body.update({k: v for k, v in extra.items() if k not in ROUTING_EXTENSIONS})
    return body


def routing_extensions(
    params: ChatCompletionCreateParams | RouteRequest,
) -> tuple[float | None, list[str] | None]:
    """``tolerance`` and ``models`` from the top level, else from ``extra_body``."""
    extra = params.extra_body
    tolerance = params.tolerance if params.tolerance is not None else (extra.tolerance if extra else None)
    models = params.models if params.models is not None else (extra.models if extra else None)
    return tolerance, models


def extension(params: BaseModel, name: str) -> Any:
    """A routing extension (``max_latency_ms``, ``cascade``) from the top level, else from ``extra_body``."""
    value = getattr(params, name, None)
    extra = getattr(params, "extra_body", None)
    return value if value is not None else getattr(extra, name, None)


def type_tag(value: Any, known: Collection[str]) -> str | None:
    """A tagged union's tag for ``value``: its ``type`` when one of ``known``, else ``"other"``; None when it
    has no string ``type`` (pydantic then reports the missing tag)."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None
    return kind if kind in known else "other"
