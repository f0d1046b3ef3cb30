"""A fake OpenAI-compatible upstream whose models give set answers with set token logprobs (for cascades)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ladder.core.confidence_plan import SELF_CHECK_PROMPT


@dataclass
class Answer:
    """What one model answers: its text, each token's logprob, and how it treats ``logprobs: true``."""

    text: str = "42"
    logprob: float = -0.05
    logprobs: str = "yes"  # yes: returns them when asked | ignore: never returns them | refuse: 400 if asked
    fail: bool = False
    yes_logprob: float = math.log(0.5)  # a self-check's log P("yes") (-inf: a certain "no")
    answer_fault: str = "none"  # how the answer call fails (`FAULTS`), whatever ``logprobs`` says
    check_fault: str = "none"  # how the self-check call fails (`FAULTS`)


FAULTS = ("none", "no logprobs", "no yes/no token", "refuse logprobs", "HTTP 503", "hang", "malformed JSON")
"""How a call of the answers fake may fail: ``no logprobs`` (a reply without them), ``no yes/no token``
(logprobs whose first token and its top alternatives are neither yes nor no), ``refuse logprobs`` (400 to a
request that asks for them), ``HTTP 503``, ``hang`` (no reply for `HANG_S`), ``malformed JSON`` (a 200 whose
body is not JSON)."""
HANG_S = 3.0


@dataclass
class AnswersUpstream:
    """State shared between a test and the fake server: answers per model, and every request received."""

    answers: dict[str, Answer] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def set(
        self, model: str, text: str, logprob: float = -0.05, logprobs: str = "yes", yes_logprob: float = math.log(0.5)
    ) -> None:
        self.answers[model] = Answer(text, logprob, logprobs, yes_logprob=yes_logprob)

    def set_faults(self, model: str, text: str, answer: str, check: str, yes_logprob: float = math.log(0.5)) -> None:
        """``model`` answers ``text``, its answer call and its self-check failing as `FAULTS` names."""
        self.answers[model] = Answer(text, yes_logprob=yes_logprob, answer_fault=answer, check_fault=check)

    def fail(self, model: str) -> None:
        self.answers[model] = Answer(fail=True)

    def reset(self) -> None:
        self.answers.clear()
        self.seen.clear()

    def asked(self) -> list[str]:
        """The models asked for an answer, in order (self-checks left out)."""
        return [model for model, body in self.seen if not is_self_check(body)]

    def checked(self) -> list[str]:
        """The models asked whether their answer is right, in order."""
        return [model for model, body in self.seen if is_self_check(body)]


def is_self_check(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or [{}]
    return isinstance(messages[-1], dict) and messages[-1].get("content") == SELF_CHECK_PROMPT


SELF_CHECK_USAGE = (30, 1)
"""A self-check reply's (prompt, completion) tokens."""


def _self_check(model: str, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
    """One token, "Yes" or "No" (the likelier), with both in its top logprobs where they are finite (with
    ``no yes/no token``: "The", its alternatives neither)."""
    yes = answer.yes_logprob
    no = math.log1p(-math.exp(yes)) if yes > -math.inf else 0.0
    top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in (("Yes", yes), ("No", no)) if math.isfinite(lp)]
    token = "Yes" if yes >= no else "No"
    if answer.check_fault == "no yes/no token":
        token, yes, no = "The", -0.1, -0.1
        top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in (("The", -0.1), ("I", -2.5), ("It", -3.0))]
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": token}, "finish_reason": "length"}
    if body.get("logprobs") and answer.logprobs == "yes" and answer.check_fault != "no logprobs":
        lp = yes if token == "Yes" else no
        choice["logprobs"] = {"content": [{"token": token, "logprob": lp, "bytes": None, "top_logprobs": top}]}
    prompt, completion = SELF_CHECK_USAGE
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return {"id": f"chatcmpl-check-{model}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", model), "choices": [choice], "usage": usage}  # fmt: skip


def _completion(model: str, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
    words = answer.text.split(" ")
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": answer.text},
        "finish_reason": "stop",
    }
    if body.get("logprobs") and answer.logprobs == "yes" and answer.answer_fault != "no logprobs":
        tokens = [w if i == 0 else f" {w}" for i, w in enumerate(words)]
        choice["logprobs"] = {
            "content": [
                {"token": t, "logprob": answer.logprob, "bytes": list(t.encode()), "top_logprobs": []}
                for t in tokens
            ]
        }
    return {
        "id": f"chatcmpl-{model}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", model),
        "choices": [choice],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 10 * len(words),
            "total_tokens": 20 + 10 * len(words),
        },
    }


def answers_upstream_app(state: AnswersUpstream) -> Starlette:
    """``POST /{model}/v1/chat/completions`` answers as ``state.answers[model]`` says."""

    async def chat(request: Request) -> Response:
        model = request.path_params["model"]
        body = await request.json()
        state.seen.append((model, body))
        answer = state.answers.get(model, Answer())
        if answer.fail:
            return JSONResponse({"error": {"message": "injected failure", "type": "server_error"}}, 500)
        fault = answer.check_fault if is_self_check(body) else answer.answer_fault
        if fault == "HTTP 503":
            return JSONResponse({"error": {"message": "injected overload", "type": "server_error"}}, 503)
        if fault == "hang":
            await asyncio.sleep(HANG_S)
        if fault == "malformed JSON":
            return Response(b'{"id": "chatcmpl-x", "choices": [', media_type="application/json")
        if body.get("logprobs") and (answer.logprobs == "refuse" or fault == "refuse logprobs"):
            error = {
                "message": "logprobs are not supported",
                "type": "invalid_request_error",
                "param": "logprobs",
            }
            return JSONResponse({"error": error}, 400)
        if is_self_check(body):
            return JSONResponse(_self_check(model, body, answer))
        return JSONResponse(_completion(model, body, answer))

    return Starlette(routes=[Route("/{model}/v1/chat/completions", chat, methods=["POST"])])
