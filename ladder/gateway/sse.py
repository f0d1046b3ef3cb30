"""Server-sent events written to clients; upstream streams are read by ``ladder.core.upstream.stream_chunks``."""

from __future__ import annotations

import json
from typing import Any

from ladder.core.upstream_replies import json_object as json_object  # one parser for upstream JSON objects


def data_event(payload: dict[str, Any] | str) -> bytes:
    text = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    )
    return f"data: {text}\n\n".encode()


def named_event(name: str, payload: dict[str, Any]) -> bytes:
    return (
        f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()
    )


def chunk_token_counts(chunk: dict[str, Any]) -> tuple[int, int] | None:
    """(prompt, completion) tokens a chat-completion chunk reports in ``usage``; None when it has none."""
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return None
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
