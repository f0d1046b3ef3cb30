"""Requests real clients sent (recorded by ``recorder.py`` into ``client_bodies/``), and sending them again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

CLIENT_BODIES = Path(__file__).parent / "client_bodies"


def recorded_request(name: str) -> dict[str, Any]:
    """``client_bodies/<name>.json``: the request's method, path, query, headers (no credentials) and body."""
    request: dict[str, Any] = json.loads((CLIENT_BODIES / f"{name}.json").read_text(encoding="utf-8"))
    return request


def replay(url: str, request: dict[str, Any], body: dict[str, Any], credentials: dict[str, str]) -> httpx.Response:
    """``request`` sent again to the gateway at ``url``, with ``body`` and the ``credentials`` headers."""
    query = f"?{request['query']}" if request["query"] else ""
    headers = {**request["headers"], **credentials}
    return httpx.post(f"{url}{request['path']}{query}", json=body, headers=headers, timeout=30)


def answered(reply: httpx.Response, stream: bool, first_event: str, last_event: str) -> Any:
    """Check that a replayed request was answered: 200, and streamed, the events from ``first_event`` to
    ``last_event``; the plain answer's JSON (None for a stream)."""
    assert reply.status_code == 200, reply.text
    if stream:
        assert reply.text.startswith(f"event: {first_event}") and f"event: {last_event}" in reply.text
        return None
    return reply.json()
