"""Record what a real client sends: a loopback Anthropic-style server that writes each request to a folder.

Usage: PYTHONPATH=tests python -m gateway_support.recorder OUT_DIR [--port N]
Point a client at it (``ANTHROPIC_BASE_URL=http://127.0.0.1:N``): every request is written to
``OUT_DIR/NNN-<path>.json`` (path, query, headers without credentials, body) and answered with a short
Anthropic message (streamed when asked), so the client carries on; other paths are recorded and answered
404 (a Responses client gives up after its retries, its first body kept). Used to refresh the fixtures in
``tests/gateway_support/client_bodies/``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SECRET_HEADERS = ("authorization", "x-api-key", "cookie")
REPLY = "Recorded."


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _stream(model: str) -> list[bytes]:
    message = {
        "id": "msg_recorded",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 0},
    }
    return [
        _event("message_start", {"type": "message_start", "message": message}),
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        _event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": REPLY}},
        ),
        _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _event(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}},
        ),
        _event("message_stop", {"type": "message_stop"}),
    ]


def recorder(out: Path) -> Starlette:
    counter = itertools.count(1)

    async def record(request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k: v for k, v in request.headers.items() if k not in SECRET_HEADERS}
        entry = {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": headers,
            "body": body,
        }
        name = request.url.path.strip("/").replace("/", "_") or "root"
        (out / f"{next(counter):03d}-{name}.json").write_text(json.dumps(entry, indent=1), encoding="utf-8")
        if not request.url.path.startswith("/v1/messages"):
            return JSONResponse(
                {"type": "error", "error": {"type": "not_found_error", "message": "recorder"}}, status_code=404
            )
        if request.url.path.endswith("count_tokens"):
            return JSONResponse({"input_tokens": 1})
        model = body.get("model", "recorded") if isinstance(body, dict) else "recorded"
        if isinstance(body, dict) and body.get("stream"):
            return StreamingResponse(iter(_stream(model)), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_recorded",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": REPLY}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        )

    return Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST", "HEAD"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    uvicorn.run(recorder(args.out), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
