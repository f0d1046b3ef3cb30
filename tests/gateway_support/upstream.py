"""A fake OpenAI-compatible upstream on loopback: one path per model, streaming, failures on demand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway_support.agent_reply import agent_completion, agent_message, agent_stream
from ladder.bench.chat_wire import chunk, completion, stream, tool_call_chunks

MODES = (
    "ok",
    "fail",
    "hang",
    "reject",
    "midstream",
    "slow",
    "no-usage",
    "401",
    "403",
    "404",
    "429",
    "503",
    "malformed",
    "badshape",
    "agent",  # calls ``agent_call``'s tool once, then answers with its result (gateway_support.agent_reply)
)
# what an upstream's error body may carry: never to be relayed to a client
MASKED_KEY = "sk-upst****************ue-42"


@dataclass
class Behaviour:
    """What one fake model does with a request."""

    mode: str = "ok"
    delay_s: float = 0.0
    retry_after: str | None = None  # the Retry-After header of a 429 or 503


@dataclass
class Seen:
    """A request the fake received."""

    model: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeUpstream:
    """State shared between the test and the fake server's event loop."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    generation: int = 0  # a hanging request is let go when the test that set it ends
    agent_call: tuple[str, dict[str, Any]] | None = None  # the tool (name, arguments) "agent" models call

    def set(self, model: str, mode: str, delay_s: float = 0.0, retry_after: str | None = None) -> None:
        assert mode in MODES, mode
        self.behaviours[model] = Behaviour(mode, delay_s, retry_after)

    def reset(self) -> None:
        self.generation += 1
        self.behaviours.clear()
        self.seen.clear()
        self.cancelled.clear()
        self.agent_call = None

    def count(self, model: str) -> int:
        return sum(1 for s in self.seen if s.model == model)


def _completion(model: str, body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": f"{model} says hi"}
    finish = "stop"
    if body.get("tools") and body.get("tool_choice") != "none":
        tool = body["tools"][0]["function"]["name"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": tool, "arguments": '{"city": "Paris"}'},
                }
            ],
        }
        finish = "tool_calls"
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    return completion(body.get("model", model), message, finish, usage, created=int(time.time()))


def _words(upstream_model: str, model: str, mode: str) -> Iterator[bytes]:
    for word in (model, " says", " hi"):
        yield chunk(upstream_model, {"content": word})
        if mode == "midstream":
            raise RuntimeError("injected failure in the middle of the stream")


def _stream(model: str, body: dict[str, Any], mode: str) -> Iterator[bytes]:
    upstream_model = body.get("model", model)
    chunks, finish = _words(upstream_model, model, mode), "stop"
    if body.get("tools") and body.get("tool_choice") != "none":
        name = body["tools"][0]["function"]["name"]
        chunks, finish = tool_call_chunks(upstream_model, "call_1", name, ('{"city": ', '"Paris"}')), "tool_calls"
    usage = None
    if (body.get("stream_options") or {}).get("include_usage") and mode != "no-usage":
        usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    return stream(upstream_model, chunks, finish, usage)


def fake_upstream_app(state: FakeUpstream) -> Starlette:
    """The app: ``POST /{model}/v1/chat/completions`` behaves as ``state.behaviours[model]`` says."""

    async def chat(request: Request) -> Response:
        model = request.path_params["model"]
        body = await request.json()
        state.seen.append(Seen(model, body, dict(request.headers)))
        behaviour = state.behaviours.get(model, Behaviour())
        if behaviour.mode == "fail":
            return JSONResponse(
                {"error": {"message": "injected failure", "type": "server_error"}}, status_code=500
            )
        if behaviour.mode in ("401", "403", "404", "429", "503"):
            error = {"message": f"Incorrect API key provided: {MASKED_KEY}", "type": "invalid_request_error"}
            headers = {"retry-after": behaviour.retry_after} if behaviour.retry_after else None
            return JSONResponse({"error": error}, status_code=int(behaviour.mode), headers=headers)
        if behaviour.mode == "malformed":
            return Response(b"<html>502 Bad Gateway</html>", media_type="application/json")
        if behaviour.mode == "badshape":
            return JSONResponse({"id": "x", "choices": [{"message": "not an object"}]})
        if behaviour.mode == "reject":
            error = {
                "message": "bad parameter",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": None,
            }
            return JSONResponse({"error": error}, status_code=400)
        if behaviour.mode == "hang":
            generation = state.generation
            while state.generation == generation:
                if await request.is_disconnected():  # the gateway hung up: it cancelled this call
                    state.cancelled.append(model)
                    break
                await asyncio.sleep(0.02)
            return JSONResponse({"error": {"message": "released"}}, status_code=503)
        if behaviour.mode == "agent":
            message, finish = agent_message(body, state.agent_call)
            upstream_model = body.get("model", model)
            if body.get("stream"):
                return StreamingResponse(agent_stream(upstream_model, message, finish), media_type="text/event-stream")
            return JSONResponse(agent_completion(upstream_model, message, finish))
        if behaviour.mode == "slow":
            await asyncio.sleep(behaviour.delay_s)
        if body.get("stream"):
            return StreamingResponse(_stream(model, body, behaviour.mode), media_type="text/event-stream")
        return JSONResponse(_completion(model, body))

    return Starlette(routes=[Route("/{model}/v1/chat/completions", chat, methods=["POST"])])
