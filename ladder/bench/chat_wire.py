"""What a fake OpenAI-compatible upstream answers with: a completion, stream chunks, the usage event, the end."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

FAKE_ID = "chatcmpl-fake"
DONE = b"data: [DONE]\n\n"


def event(payload: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload)}\n\n".encode()


def completion(
    model: str,
    message: Mapping[str, Any],
    finish: str,
    usage: Mapping[str, int],
    *,
    created: int = 0,
    reply_id: str = FAKE_ID,
) -> dict[str, Any]:
    """A ``chat.completion`` with one choice."""
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def chunk(
    model: str,
    delta: Mapping[str, Any],
    finish: str | None = None,
    *,
    logprobs: Mapping[str, Any] | None = None,
    reply_id: str = FAKE_ID,
) -> bytes:
    """A ``chat.completion.chunk`` event with one choice's ``delta`` (and its ``logprobs``, if given)."""
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return event(
        {"id": reply_id, "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [choice]}
    )


def usage_chunk(usage: Mapping[str, int], *, reply_id: str = FAKE_ID) -> bytes:
    """The last chunk of a stream asked with ``include_usage``: no choices, the usage."""
    return event({"id": reply_id, "choices": [], "usage": usage})


def tool_call_chunks(
    model: str, call_id: str, name: str, pieces: Iterable[str], *, reply_id: str = FAKE_ID
) -> Iterator[bytes]:
    """One tool call streamed: its id and name, then its arguments in ``pieces``."""
    head = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    yield chunk(model, {"tool_calls": [head]}, reply_id=reply_id)
    for piece in pieces:
        yield chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, reply_id=reply_id)


def stream(
    model: str, chunks: Iterable[bytes], finish: str, usage: Mapping[str, int] | None, *, reply_id: str = FAKE_ID
) -> Iterator[bytes]:
    """A streamed answer: the assistant's role, ``chunks``, the finish reason, the usage (if given), the end."""
    yield chunk(model, {"role": "assistant", "content": ""}, reply_id=reply_id)
    yield from chunks
    yield chunk(model, {}, finish, reply_id=reply_id)
    if usage is not None:
        yield usage_chunk(usage, reply_id=reply_id)
    yield DONE
