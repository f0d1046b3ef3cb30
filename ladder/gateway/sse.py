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

