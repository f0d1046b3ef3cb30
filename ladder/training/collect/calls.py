"""One question to one pool model through the gateway's upstream client: streamed, timed, retried, priced."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from ladder.core.errors import UpstreamError, UpstreamRejectedError, UpstreamTimeoutError
from ladder.core.locality import LocalityError, refusal
from ladder.core.pool import ModelSpec
from ladder.core.pricing import Usage, estimate_tokens, price_usd
from ladder.core.upstream import UpstreamClient, stream_chunks
from ladder.core.upstream_replies import Chunk
from ladder.training.collect.questions import Question
from ladder.training.collect.store import Answer

EMPTY = "empty answer"
CUT_OFF = "cut off by max_tokens before any content (finish_reason length)"


@dataclass(frozen=True)
class CallSettings:
    """How each call is made: sampling, limits and the retry schedule."""

    max_tokens: int = 512
    temperature: float = 0.0
    timeout_s: float = 120.0
    retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 300.0
    logprobs: bool = True


class CallFailed(Exception):
    """A call gave no answer after its retries (or was refused): nothing is stored, a later run retries it."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass
class _Stream:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    first_token_at: float | None = None


def prompt_chars(spec: ModelSpec, question: Question) -> str:
    """The text a model is sent: its system prompt and every message, for token estimates."""
    texts = [spec.system_prompt or ""]
    texts += [str(m.get("content") or "") for m in question.messages]
    return "\n".join(t for t in texts if t)


def request_body(question: Question, settings: CallSettings, logprobs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [dict(m) for m in question.messages],
        "max_tokens": settings.max_tokens,
        "temperature": settings.temperature,
    }
    if logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = 1  # llama.cpp's server returns token logprobs only when this is set
    return body


def _read_chunk(chunk: Chunk, out: _Stream, now: float) -> None:
    if chunk.usage is not None:
        out.usage = chunk.usage
    for choice in chunk.choices:
        if choice.text:
            out.parts.append(choice.text)
            if out.first_token_at is None:
                out.first_token_at = now
        if choice.finish_reason:
            out.finish_reason = choice.finish_reason
        out.logprobs.extend({"token": t.token, "logprob": t.logprob} for t in choice.logprobs or ())


async def _attempt(
    client: UpstreamClient, spec: ModelSpec, question: Question, settings: CallSettings, logprobs: bool
) -> tuple[_Stream, float, float]:
    started = time.monotonic()
    out = _Stream()
    try:
        async with asyncio.timeout(settings.timeout_s):
            reply = await client.send(
                spec, request_body(question, settings, logprobs), settings.timeout_s, True, {}
            )
            async for chunk in stream_chunks(reply, spec.name):
                _read_chunk(chunk, out, time.monotonic())
    except TimeoutError as exc:
        raise UpstreamTimeoutError(
            f"upstream for {spec.name} timed out after {settings.timeout_s:g}s"
        ) from exc
    return out, started, time.monotonic()


def _answer(
    spec: ModelSpec, question: Question, got: _Stream, started: float, ended: float, attempts: int
) -> Answer:
    text = "".join(got.parts)
    usage, estimated = got.usage, False
    if usage is None:
        usage = Usage(estimate_tokens(prompt_chars(spec, question)), estimate_tokens(text) if text else 0)
        estimated = True
    failure = None
    if not text.strip():
        failure = CUT_OFF if got.finish_reason == "length" else EMPTY
    return Answer(
        question_id=question.id,
        model=spec.name,
        status="failed" if failure else "ok",
        failure=failure,
        text=text,
        finish_reason=got.finish_reason,
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        usage_estimated=estimated,
        cost_usd=price_usd(spec, usage.prompt_tokens, usage.completion_tokens),
        latency_s=ended - started,
        ttft_s=None if got.first_token_at is None else got.first_token_at - started,
        logprobs=got.logprobs or None,
        attempts=attempts,
    )


def retry_delay(exc: UpstreamError, attempt: int, settings: CallSettings) -> float:
    """The upstream's Retry-After when it sent one, else exponential backoff with jitter."""
    if exc.retry_after_s is not None:
        return min(exc.retry_after_s, settings.max_retry_after_s)
    base = min(settings.max_backoff_s, settings.backoff_s * 2.0 ** (attempt - 1))
    return float(base * random.uniform(0.5, 1.0))


async def ask(
    client: UpstreamClient,
    spec: ModelSpec,
    question: Question,
    settings: CallSettings,
    no_logprobs: set[str],
) -> Answer:
    """Ask until an answer comes back; CallFailed after the retries, or at once when the upstream refuses.

    Logprobs are asked for unless the model refused them before. A refusal (400) of a call that asked for
    them is tried once without; when that is answered, the model's name goes into ``no_logprobs``.
    A sensitive question for a cloud model raises ``LocalityError`` before anything is sent (callers skip
    such pairs; this is the last line before the network).
    """
    why = refusal(spec, question.sensitive)
    if why is not None:
        raise LocalityError(f"question {question.id}: {why} ({spec.name} is {spec.locality})")
    attempt = 0
    logprobs = settings.logprobs and spec.name not in no_logprobs
    while True:
        attempt += 1
        try:
            got, started, ended = await _attempt(client, spec, question, settings, logprobs)
        except UpstreamRejectedError as exc:
            if logprobs:  # perhaps only the logprobs field was refused: ask once more without it
                logprobs = False
                continue
            raise CallFailed(str(exc), attempt) from exc
        except UpstreamError as exc:
            if attempt > settings.retries:
                raise CallFailed(f"{exc} (after {attempt} attempts)", attempt) from exc
            await asyncio.sleep(retry_delay(exc, attempt, settings))
            continue
        if settings.logprobs and not logprobs:
            no_logprobs.add(spec.name)
        return _answer(spec, question, got, started, ended, attempt)
