"""Upstream chat completions and stream chunks: checked at the boundary (anything malformed is an
UpstreamError) and read through typed views; each view keeps the checked JSON object (``raw``) that the
gateway forwards to clients unchanged. Nothing past this module walks ``choices[0]["message"]`` by hand."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ladder.core.errors import UpstreamError
from ladder.core.logprobs import TokenLogprob, token_logprobs
from ladder.core.pricing import Usage


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
    index: Any = None  # read when it is an integer, never refused
    message: _Message
    finish_reason: str | None = None
    logprobs: Any = None  # read by ``token_logprobs``, never refused


class _Completion(_Lenient):
    id: Any = None
    model: Any = None
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _DeltaChoice(_Lenient):
    index: Any = None
    delta: _Message | None = None
    finish_reason: str | None = None
    logprobs: Any = None


class _Chunk(_Lenient):
    choices: list[_DeltaChoice] | None = None
    usage: _Usage | None = None


@dataclass(frozen=True)
class ToolCall:
    """One tool call of a message, or a piece of one in a streamed delta (``raw``: its JSON object)."""

    id: str | None
    index: int | None
    name: str | None
    arguments: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Choice:
    """One choice of a completion (its message) or of a chunk (its delta)."""

    index: int | None
    text: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    logprobs: tuple[TokenLogprob, ...] | None


@dataclass(frozen=True)
class Completion:
    """A plain chat completion; the first choice's fields are read through the properties."""

    raw: dict[str, Any]
    id: str | None
    model: str | None
    choices: tuple[Choice, ...]  # at least one
    usage: Usage | None

    @property
    def text(self) -> str | None:
        return self.choices[0].text

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.choices[0].tool_calls

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason

    @property
    def logprobs(self) -> tuple[TokenLogprob, ...] | None:
        return self.choices[0].logprobs

    @property
    def finish_reasons(self) -> tuple[str, ...]:
        """Every choice's finish reason, in order (choices without one left out)."""
        return _finish_reasons(self.choices)

    def without_logprobs(self) -> dict[str, Any]:
        """A copy of ``raw`` whose choices carry no ``logprobs`` (for a client that did not ask for them)."""
        choices = [{k: v for k, v in c.items() if k != "logprobs"} for c in self.raw["choices"]]
        return {**self.raw, "choices": choices}


@dataclass(frozen=True)
class Chunk:
    """One streamed chat-completion chunk: its choices' deltas and, in the last one, the usage."""

    raw: dict[str, Any]
    choices: tuple[Choice, ...]
    usage: Usage | None

    @property
    def finish_reasons(self) -> tuple[str, ...]:
        return _finish_reasons(self.choices)

    @property
    def texts(self) -> list[str]:
        """The generated text this chunk carries: each delta's content and tool-call arguments."""
        texts: list[str] = []
        for choice in self.choices:
            if choice.text is not None:
                texts.append(choice.text)
            texts.extend(call.arguments for call in choice.tool_calls if call.arguments is not None)
        return texts


def _finish_reasons(choices: Sequence[Choice]) -> tuple[str, ...]:
    return tuple(c.finish_reason for c in choices if c.finish_reason is not None)


def _usage(usage: _Usage | None) -> Usage | None:
    if usage is None or usage.prompt_tokens is None or usage.completion_tokens is None:
        return None
    return Usage(usage.prompt_tokens, usage.completion_tokens)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tool_calls(calls: list[_ToolCall] | None, raw: Mapping[str, Any] | None) -> tuple[ToolCall, ...]:
    raw_calls = (raw or {}).get("tool_calls") or ()
    return tuple(
        ToolCall(
            call.id,
            call.index,
            call.function.name if call.function else None,
            call.function.arguments if call.function else None,
            raw_call,
        )
        for call, raw_call in zip(calls or (), raw_calls, strict=True)
    )


def _choice(
    checked: _Choice | _DeltaChoice, message: _Message | None, raw: Mapping[str, Any], part: str
) -> Choice:
    return Choice(
        index=_integer(checked.index),
        text=message.content if message is not None else None,
        tool_calls=_tool_calls(message.tool_calls if message else None, raw.get(part)),
        finish_reason=checked.finish_reason,
        logprobs=token_logprobs(checked.logprobs),
    )


def json_object(raw: str | bytes, problem: str, reason: str) -> dict[str, Any]:
    """Parse an upstream's JSON object, or raise UpstreamError(``problem``, ``reason``)."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UpstreamError(problem, reason) from exc
    if not isinstance(value, dict):
        raise UpstreamError(problem, reason)
    return value


def completion(raw: bytes, model: str) -> Completion:
    """A plain chat completion, parsed and checked: a JSON object with at least one choice and a message."""
    data = json_object(raw, f"upstream for {model} answered invalid JSON or a non-object", "bad reply")
    try:
        checked = _Completion.model_validate(data)
    except ValidationError as exc:
        raise UpstreamError(
            f"upstream for {model} answered a malformed chat completion "
            f"({exc.errors()[0]['loc']}: {exc.errors()[0]['msg']})",
            "bad reply",
        ) from exc
    return Completion(
        raw=data,
        id=checked.id if isinstance(checked.id, str) else None,
        model=checked.model if isinstance(checked.model, str) else None,
        choices=tuple(
            _choice(c, c.message, raw_choice, "message")
            for c, raw_choice in zip(checked.choices, data["choices"], strict=True)
        ),
        usage=_usage(checked.usage),
    )


def chunk(data: str, model: str) -> Chunk:
    """One streamed chunk, parsed and checked; an ``error`` event raises."""
    value = json_object(data, f"upstream for {model} sent an invalid event", "bad event")
    error = value.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else error
        raise UpstreamError(f"upstream for {model} failed mid-stream: {str(message)[:300]}", "stream error")
    try:
        checked = _Chunk.model_validate(value)
    except ValidationError as exc:
        raise UpstreamError(f"upstream for {model} sent a malformed chunk", "bad event") from exc
    return Chunk(
        raw=value,
        choices=tuple(
            _choice(c, c.delta, raw_choice, "delta")
            for c, raw_choice in zip(checked.choices or (), value.get("choices") or (), strict=True)
        ),
        usage=_usage(checked.usage),
    )
