"""Upstream dispatch: fallback along the decision's order within one deadline, safe retries, circuit breaker.

Each attempt must get its first byte within ``first_byte_s`` (by default a third of the deadline), so a
hanging upstream is abandoned in time for the next model to answer. The same model is tried again only when
the client says the request provably did not reach it or was refused with an explicit server error; a
timeout or a reset falls back to the next model instead (the request may have been billed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from ladder.core.errors import UpstreamError, UpstreamRejectedError, UpstreamTimeoutError
from ladder.core.pool import ModelSpec
from ladder.core.upstream import UpstreamClient, UpstreamReply, upstream_url
from ladder.gateway.breaker import CircuitBreaker
from ladder.gateway.metrics import GatewayMetrics
from ladder.gateway.tracing import inject_context, start_span


@dataclass(frozen=True)
class Attempt:
    """One try of one model, and how it ended."""

    model: str
    outcome: str
    ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "outcome": self.outcome, "ms": round(self.ms, 2)}


@dataclass
class Dispatched:
    """The model that answered, its reply, and the failed attempts before it."""

    model: ModelSpec
    reply: UpstreamReply
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def failures(self) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome != "ok"]

    def fallback_header(self) -> str | None:
        """``model (reason), ...`` of the models given up on, or None when the first choice answered."""
        failed = [a for a in self.failures if a.model != self.model.name]
        if not failed:
            return None
        seen: dict[str, str] = {}
        for a in failed:
            seen[a.model] = a.outcome
        return ", ".join(f"{m} ({why})" for m, why in seen.items())


class Dispatcher:
    """Sends a request to the first healthy model of an order, within one total deadline."""

    def __init__(
        self,
        client: UpstreamClient,
        breaker: CircuitBreaker,
        metrics: GatewayMetrics,
        tracer: Tracer | None,
        *,
        attempt_timeout_s: float,
        retries: int,
        backoff_s: float,
        deadline_s: float,
        first_byte_s: float | None = None,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.metrics = metrics
        self.tracer = tracer
        self.attempt_timeout_s = attempt_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.deadline_s = deadline_s
        self.first_byte_s = first_byte_s if first_byte_s is not None else deadline_s / 3

    async def send(self, order: Sequence[ModelSpec], body: dict[str, Any], stream: bool) -> Dispatched:
        """The first successful reply along ``order``; raises 502/504 errors when every model failed."""
        deadline = time.monotonic() + self.deadline_s
        attempts: list[Attempt] = []
        last: UpstreamError | None = None
        skipped = []
        for spec in order:
            if not self.breaker.allow(spec.name):
                attempts.append(Attempt(spec.name, "circuit open", 0.0))
                skipped.append(spec)
                continue
            reply, last = await self._try(spec, body, stream, deadline, attempts, last)
            if reply is not None:
                return Dispatched(spec, reply, attempts)
        for spec in skipped if len(skipped) == len(order) else ():  # every circuit open: try them anyway
            if self.breaker.held(spec.name):  # ... unless it asked to be left alone (Retry-After)
                continue
            reply, last = await self._try(spec, body, stream, deadline, attempts, last)
            if reply is not None:
                return Dispatched(spec, reply, attempts)
        summary = "; ".join(f"{a.model}: {a.outcome}" for a in attempts)
        if isinstance(last, UpstreamTimeoutError) or time.monotonic() >= deadline:
            raise UpstreamTimeoutError(f"no upstream answered in time ({summary})")
        raise UpstreamError(f"every qualifying upstream failed ({summary})")

    async def _try(
        self,
        spec: ModelSpec,
        body: dict[str, Any],
        stream: bool,
        deadline: float,
        attempts: list[Attempt],
        last: UpstreamError | None,
    ) -> tuple[UpstreamReply | None, UpstreamError | None]:
        for attempt in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, UpstreamTimeoutError("the total deadline passed")
            started = time.perf_counter()
            try:
                reply = await self._attempt(
                    spec,
                    body,
                    stream,
                    min(self.attempt_timeout_s, remaining),
                    min(self.first_byte_s, remaining),
                )
            except UpstreamRejectedError:
                self.breaker.release(spec.name)
                raise
            except UpstreamError as exc:
                if exc.retry_after_s is not None:
                    self.breaker.hold(spec.name, exc.retry_after_s)
                self.breaker.failure(spec.name)
                outcome = exc.reason
                attempts.append(Attempt(spec.name, outcome, (time.perf_counter() - started) * 1000))
                self.metrics.fallbacks.labels(spec.name, outcome).inc()
                last = exc
                if not exc.retry_same or attempt == self.retries or not self.breaker.allow(spec.name):
                    break
                await asyncio.sleep(max(0.0, min(self.backoff_s * 2**attempt, deadline - time.monotonic())))
                continue
            except BaseException:
                self.breaker.release(spec.name)
                raise
            self.breaker.success(spec.name)
            attempts.append(Attempt(spec.name, "ok", (time.perf_counter() - started) * 1000))
            return reply, last
        return None, last

    async def _attempt(
        self, spec: ModelSpec, body: dict[str, Any], stream: bool, timeout_s: float, first_byte_s: float
    ) -> UpstreamReply:
        with start_span(self.tracer, "ladder.core.upstream", SpanKind.CLIENT) as span:
            span.set_attribute("ladder.model", spec.name)
            span.set_attribute("gen_ai.request.model", spec.upstream.model)
            span.set_attribute("url.full", upstream_url(spec))
            try:
                headers = inject_context({}) if self.tracer is not None else {}
                reply = await self.client.send(
                    spec, body, timeout_s, stream, headers, first_byte_s=first_byte_s
                )
            except UpstreamError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            span.set_attribute("http.response.status_code", reply.response.status_code)
            return reply
