"""The fake upstream's ``agent`` mode: call the tool a test names once, then answer with what it returned."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from ladder.bench import chat_wire
from ladder.core.prompt import content_text

REPLY_ID = "chatcmpl-agent"
USAGE = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}

FINAL_PREFIX = "The tool said: "
NO_TOOL_ANSWER = "ladder agent answer"


def agent_message(body: dict[str, Any], call: tuple[str, dict[str, Any]] | None) -> tuple[dict[str, Any], str]:
    """The assistant message and finish reason: after a tool result, its text; else the named tool's call
    when the request offers it; else a plain answer."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return {"role": "assistant", "content": FINAL_PREFIX + content_text(last.get("content"))[:400]}, "stop"
    offered = {t.get("function", {}).get("name") for t in body.get("tools") or ()}
    if call is not None and call[0] in offered:
        tool_call = {
            "id": "call_agent_1",
            "type": "function",
            "function": {"name": call[0], "arguments": json.dumps(call[1])},
        }
        return {"role": "assistant", "content": None, "tool_calls": [tool_call]}, "tool_calls"
    return {"role": "assistant", "content": NO_TOOL_ANSWER}, "stop"


def agent_completion(model: str, message: dict[str, Any], finish: str) -> dict[str, Any]:
    return chat_wire.completion(model, message, finish, USAGE, created=int(time.time()), reply_id=REPLY_ID)


def agent_stream(model: str, message: dict[str, Any], finish: str) -> Iterator[bytes]:
    """The message as chat chunks: text in two pieces, a tool call's arguments in two pieces, then usage."""
    return chat_wire.stream(model, _chunks(model, message), finish, USAGE, reply_id=REPLY_ID)


def _halves(text: str) -> tuple[str, str]:
    return text[: len(text) // 2], text[len(text) // 2 :]


def _chunks(model: str, message: dict[str, Any]) -> Iterator[bytes]:
    for call in message.get("tool_calls") or ():
        pieces = _halves(call["function"]["arguments"])
        yield from chat_wire.tool_call_chunks(model, call["id"], call["function"]["name"], pieces, reply_id=REPLY_ID)
    text = message.get("content") or ""
    if text:
        for piece in _halves(text):
            yield chat_wire.chunk(model, {"content": piece}, reply_id=REPLY_ID)
