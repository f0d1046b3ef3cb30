"""The fake upstream's ``agent`` mode: call the tool a test names once, then answer with what it returned."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from ladder.core.prompt import content_text

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
    return {
        "id": "chatcmpl-agent",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
    }


def agent_stream(model: str, message: dict[str, Any], finish: str) -> Iterator[bytes]:
    """The message as chat chunks: text in two pieces, a tool call's arguments in two pieces, then usage."""

    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": reason}
        data = {
            "id": "chatcmpl-agent",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [choice],
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    for call in message.get("tool_calls") or ():
        arguments = call["function"]["arguments"]
        head = {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield chunk({"tool_calls": [head]})
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    text = message.get("content") or ""
    if text:
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            yield chunk({"content": piece})
    yield chunk({}, finish)
    usage = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
    yield f"data: {json.dumps({'id': 'chatcmpl-agent', 'choices': [], 'usage': usage})}\n\n".encode()
    yield b"data: [DONE]\n\n"
