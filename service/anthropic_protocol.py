"""The Anthropic Messages API, translated to and from the upstreams' OpenAI chat format."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from service.errors import InvalidRequestError
from service.protocol import Passthrough, RoutingExtensions

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


class MessageParam(Passthrough):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessageCreateParams(Passthrough):
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = None
    tolerance: float | None = Field(default=None, ge=0, le=1)
    models: list[str] | None = Field(default=None, min_length=1)
    extra_body: RoutingExtensions | None = None


def _text(blocks: str | list[Any] | None) -> str:
    if blocks is None or isinstance(blocks, str):
        return blocks or ""
    return "\n".join(
        str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"
    )


def _image(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        raise InvalidRequestError(f"unsupported image source {source.get('type')!r}", "messages")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tool_results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image(block))
        elif kind == "tool_result":
            inner = block.get("content")
            text = _text(inner) if isinstance(inner, list | str | None) else str(inner)
            tool_results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        elif kind == "document" and (block.get("source") or {}).get("type") == "text":
            parts.append({"type": "text", "text": str(block["source"].get("data", ""))})
    return tool_results + ([{"role": "user", "content": parts}] if parts else [])


def _assistant_message(content: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})},
        }
        for b in content
        if b.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": _text(content) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_choice(choice: dict[str, Any]) -> str | dict[str, Any]:
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(str(kind), "auto")


def to_chat_body(params: MessageCreateParams) -> dict[str, Any]:
    """An OpenAI chat-completions body for a Messages API request."""
    messages: list[dict[str, Any]] = []
    system = _text(params.system)
    if system:
        messages.append({"role": "system", "content": system})
    for m in params.messages:
        if isinstance(m.content, str):
            messages.append({"role": m.role, "content": m.content})
        elif m.role == "user":
            messages.extend(_user_messages(m.content))
        else:
            messages.append(_assistant_message(m.content))
    body: dict[str, Any] = {"model": params.model, "messages": messages, "max_tokens": params.max_tokens}
    for key in ("temperature", "top_p"):
        if getattr(params, key) is not None:
            body[key] = getattr(params, key)
    if params.stop_sequences:
        body["stop"] = params.stop_sequences
    if params.stream:
        body["stream"] = True
    if params.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema") or {"type": "object"},
                },
            }
            for t in params.tools
        ]
    if params.tool_choice:
        body["tool_choice"] = _tool_choice(params.tool_choice)
        if params.tool_choice.get("disable_parallel_tool_use"):
            body["parallel_tool_calls"] = False
    if params.metadata and params.metadata.get("user_id"):
        body["user"] = str(params.metadata["user_id"])
    return body


def to_message(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic ``Message`` for an OpenAI chat completion."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {"_raw": function.get("arguments")}
        content.append(
            {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments}
        )
    usage = completion.get("usage") or {}
    return {
        "id": f"msg_{completion.get('id', '')}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.get("prompt_tokens", 0),
            "output_tokens": usage.get("completion_tokens", 0),
        },
    }
