"""The shapes an upstream's chat completion and stream chunks must have; anything else is an UpstreamError."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ladder.core.errors import UpstreamError


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Function(_Lenient):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(_Lenient):
    id: str | None = None
    index: int | None = None
    function: _Function | None = None


class _Message(_Lenient):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Usage(_Lenient):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Choice(_Lenient):
    message: _Message
    finish_reason: str | None = None


class _Completion(_Lenient):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _DeltaChoice(_Lenient):
    delta: _Message | None = None
    finish_reason: str | None = None


class _Chunk(_Lenient):
    choices: list[_DeltaChoice] | None = None
    usage: _Usage | None = None


def json_object(raw: str | bytes, problem: str, reason: str) -> dict[str, Any]:
    """Parse an upstream's JSON object, or raise UpstreamError(``problem``, ``reason``)."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UpstreamError(problem, reason) from exc
    if not isinstance(value, dict):
        raise UpstreamError(problem, reason)
    return value


def completion(raw: bytes, model: str) -> dict[str, Any]:
    """A plain chat completion, parsed and checked: a JSON object with at least one choice and a message."""
    data = json_object(raw, f"upstream for {model} answered invalid JSON or a non-object", "bad reply")
    try:
        _Completion.model_validate(data)
    except ValidationError as exc:
        raise UpstreamError(
            f"upstream for {model} answered a malformed chat completion "
            f"({exc.errors()[0]['loc']}: {exc.errors()[0]['msg']})",
            "bad reply",
        ) from exc
    return data


def chunk(data: str, model: str) -> dict[str, Any]:
    """One streamed chunk, parsed and checked; an ``error`` event raises."""
    value = json_object(data, f"upstream for {model} sent an invalid event", "bad event")
    error = value.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else error
        raise UpstreamError(f"upstream for {model} failed mid-stream: {str(message)[:300]}", "stream error")
    try:
        _Chunk.model_validate(value)
    except ValidationError as exc:
        raise UpstreamError(f"upstream for {model} sent a malformed chunk", "bad event") from exc
    return value


def finished(value: dict[str, Any]) -> bool:
    """Whether a (checked) chunk carries a ``finish_reason``."""
    return any(c.get("finish_reason") for c in value.get("choices") or ())
