"""A fake pool on loopback: each model answers each question deterministically, with failures on demand.

``POST /{model}/v1/chat/completions`` streams (or returns) an OpenAI chat completion. The answer comes from
the test's ``answer(model, messages)``; a fault queued for a (model, question) pair is played on the next call
instead: ``500``, ``429:<seconds>`` (with ``Retry-After``), ``hang`` (until the client hangs up), ``empty``,
``length`` (no content, ``finish_reason: length``), ``reject`` (400), ``garbage``
(prose, not JSON). Every call is counted and timed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ladder.bench.chat_wire import chunk, completion, stream

Answerer = Callable[[str, list[dict[str, Any]]], str]


def first_user(messages: list[dict[str, Any]]) -> str:
    """The conversation's first user message: the question (a judge's retries keep the same first message)."""
    return next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")


@dataclass
class FakePool:
    """State shared by the test and the server thread."""

    answer: Answerer
    delay_s: float = 0.0
    faults: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    times: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    bodies: list[dict[str, Any]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    no_logprobs: set[str] = field(default_factory=set)  # models that refuse the logprobs field

    def fail(self, model: str, question: str, *modes: str) -> None:
        self.faults[(model, question)].extend(modes)

    def total(self, model: str | None = None) -> int:
        return sum(n for (m, _), n in self.calls.items() if model is None or m == model)


def _logprobs(word: str) -> dict[str, Any]:
    return {"content": [{"token": word, "logprob": -0.25, "top_logprobs": []}]}


def _stream(model: str, words: list[str], finish: str, usage: dict[str, int], logprob: bool) -> Iterator[bytes]:
    chunks = (chunk(model, {"content": w}, logprobs=_logprobs(w) if logprob and w else None) for w in words)
    return stream(model, chunks, finish, usage)


def fake_pool_app(pool: FakePool) -> Starlette:
    async def chat(request: Request) -> Response:
        model = request.path_params["model"]
        body = await request.json()
        messages = body.get("messages") or []
        question = first_user(messages)
        key = (model, question)
        pool.calls[key] += 1
        pool.times[key].append(time.monotonic())
        pool.bodies.append(body)
        mode = pool.faults[key].pop(0) if pool.faults.get(key) else "ok"
        if pool.delay_s:
            await asyncio.sleep(pool.delay_s)
        if mode == "500":
            return JSONResponse({"error": {"message": "injected", "type": "server_error"}}, status_code=500)
        if mode.startswith("429"):
            wait = mode.partition(":")[2] or "1"
            return JSONResponse(
                {"error": {"message": "slow down", "type": "rate_limit"}},
                status_code=429,
                headers={"Retry-After": wait},
            )
        if mode == "reject" or (body.get("logprobs") and model in pool.no_logprobs):
            return JSONResponse(
                {"error": {"message": "unsupported field", "type": "invalid_request_error"}}, status_code=400
            )
        if mode == "hang":
            while not pool.released.is_set() and not await request.is_disconnected():
                await asyncio.sleep(0.02)
            return JSONResponse({"error": {"message": "released"}}, status_code=503)
        text = "" if mode in ("empty", "length") else pool.answer(model, messages)
        if mode == "garbage":
            text = "Sure! The answer looks right to me."
        words = [w + " " for w in text.split(" ")] if text else []
        if words:
            words[-1] = words[-1].rstrip(" ")
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages) + 3
        completion_tokens = body.get("max_tokens", 16) if mode == "length" else len(words)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": 0}
        finish = "length" if mode == "length" else "stop"
        if body.get("stream"):
            stream = _stream(body.get("model", model), words, finish, usage, bool(body.get("logprobs")))
            return StreamingResponse(stream, media_type="text/event-stream")
        message = {"role": "assistant", "content": text}
        return JSONResponse(completion(body.get("model", model), message, finish, usage))

    return Starlette(routes=[Route("/{model}/v1/chat/completions", chat, methods=["POST"])])


def pool_yaml(url: str, models: dict[str, tuple[float, float]], key_env: str | None = None) -> str:
    """A pool file for the fake: model name -> ($ per 1M input, $ per 1M output)."""
    lines = ["version: 1", "routing:", "  checkpoint: ckpt", "models:"]
    for name, (price_in, price_out) in models.items():
        lines += [
            f"  - name: {name}",
            "    upstream:",
            f"      base_url: {url}/{name}/v1",
            f"      model: fake-{name}",
        ]
        if key_env:
            lines.append(f"      api_key_env: {key_env}")
        lines += [
            f"    price: {{input_per_1m: {price_in}, output_per_1m: {price_out}}}",
            "    context_window: 8192",
        ]
    return "\n".join(lines) + "\n"
