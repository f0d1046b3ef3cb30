"""The one way out of the gateway: every upstream call passes here, and so does every guard on it.

Answers, their retries and fallbacks, cascade stages, second opinions, shadow references and shadow judges
are all sent by ``Dispatcher.send`` with the request's context. It holds the only upstream client in the
gateway (``tests/test_dispatch_choke_point.py`` checks that no other gateway module imports one) and, before
any byte leaves, enforces:

- **locality**: a sensitive request only ever reaches ``on-prem`` models; the others are dropped from the
  order, and an order with none left is refused (``LocalityError``, 400) before anything is sent;
- **the deadline**: the request's own (``RequestContext.deadline``) and at most ``deadline_s`` per send;
- **spend**: its spend hook is called before each attempt (a refusal sends nothing) and settled after it with
  the attempt's cost and usage; the gateway's hook charges every paid attempt to the request's budget
  reservation (``ladder.gateway.spend``).

Each attempt must get its first byte within ``first_byte_s`` (by default a third of the deadline), so a
hanging upstream is abandoned in time for the next model to answer. The same model is tried again only when
the client says the request provably did not reach it or was refused with an explicit server error; a
timeout or a reset falls back to the next model instead (the request may have been billed).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import httpx
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from ladder.core.decision_record import FailedAttempt
from ladder.core.errors import (
    NoEligibleModelError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
)
from ladder.core.locality import LocalityError, may_receive
from ladder.core.pool import ModelSpec
from ladder.core.pricing import Usage
from ladder.core.upstream import UpstreamClient, UpstreamReply, stream_chunks, upstream_url
from ladder.core.upstream_replies import Chunk, Completion
from ladder.gateway.breaker import CircuitBreaker
from ladder.gateway.context import Purpose, RequestContext
from ladder.gateway.costs import usage_cost
from ladder.gateway.metrics import GatewayMetrics
from ladder.gateway.settings import Settings
from ladder.gateway.spend import Hold, NoSpend, SpendClaim, SpendHook
from ladder.gateway.state import Background
from ladder.gateway.tracing import inject_context, start_span


def allowed(ctx: RequestContext, spec: ModelSpec) -> bool:
    """Whether ``spec`` may receive the request (the core's locality rule, ``ladder.core.locality``)."""
    return may_receive(spec, ctx.sensitive)


@dataclass(frozen=True)
class Attempt:
    """One try of one model, and how it ended."""

    model: str
    outcome: str
    ms: float

    def to_dict(self) -> dict[str, Any]:
        return self.record().model_dump()

    def record(self) -> FailedAttempt:
        """The attempt as a decision record lists it."""
        return FailedAttempt(model=self.model, outcome=self.outcome, ms=round(self.ms, 2))


@dataclass
class Dispatched:
    """The model that answered, its reply, and the failed attempts before it."""

    model: ModelSpec
    reply: UpstreamReply
    attempts: list[Attempt] = field(default_factory=list)
    hold: Hold | None = None  # a stream's reservation, settled when the stream ends

    def chunks(self) -> AsyncGenerator[Chunk, None]:
        """A streamed reply's checked chunks."""
        return stream_chunks(self.reply, self.model.name)

    @property
    def completion(self) -> Completion:
        """A plain reply's checked completion (an UpstreamError where there is none)."""
        if self.reply.completion is None:
            raise UpstreamError(f"upstream for {self.model.name} sent no answer", "bad reply")
        return self.reply.completion

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


@dataclass(eq=False)
class Dispatcher:
    """Sends a request to the first healthy model of an order it may reach, within the request's deadline."""

    _client: UpstreamClient
    breaker: CircuitBreaker
    metrics: GatewayMetrics
    tracer: Tracer | None
    _: KW_ONLY
    attempt_timeout_s: float
    retries: int
    backoff_s: float
    deadline_s: float
    first_byte_s: float | None = None  # None: a third of deadline_s
    spend: SpendHook = field(default_factory=NoSpend)  # the gateway sets its BudgetHook
    refused: Counter[Purpose] = field(default_factory=Counter, init=False)  # models dropped for locality, by purpose
    _settling: Background = field(default_factory=Background, init=False)

    @property
    def first_byte_timeout_s(self) -> float:
        """How long an attempt may wait for its first byte."""
        return self.first_byte_s if self.first_byte_s is not None else self.deadline_s / 3

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metrics: GatewayMetrics,
        tracer: Tracer | None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Dispatcher:
        """The gateway's dispatcher and its upstream client (``transport``: a seam for tests)."""
        client = UpstreamClient(
            settings.connect_timeout_s,
            settings.keepalive_connections,
            transport,
            max_connections=settings.upstream_max_connections,
            keepalive_expiry_s=settings.keepalive_expiry_s,
            ca_bundle=settings.upstream_ca_bundle,
            http=settings.upstream_http,
        )
        return cls(
            client,
            CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s),
            metrics,
            tracer,
            attempt_timeout_s=settings.attempt_timeout_s,
            retries=settings.retries,
            backoff_s=settings.retry_backoff_s,
            deadline_s=settings.deadline_s,
            first_byte_s=settings.first_byte_timeout_s,
        )

    async def aclose(self) -> None:
        await self._settling.drain()
        await self._client.aclose()

    def permitted(self, ctx: RequestContext, order: Sequence[ModelSpec]) -> list[ModelSpec]:
        """The models of ``order`` the request may reach (locality), in order."""
        return [spec for spec in order if allowed(ctx, spec)]

    async def send(
        self,
        ctx: RequestContext,
        order: Sequence[ModelSpec],
        body: dict[str, Any],
        stream: bool,
        purpose: Purpose = Purpose.ANSWER,
    ) -> Dispatched:
        """The first successful reply along ``order``; raises ``LocalityError`` when the request may reach
        none of it and 502/504 errors when every model it may reach failed."""
        permitted = self.permitted(ctx, order)
        if len(permitted) < len(order):
            self.refused[purpose] += len(order) - len(permitted)
        if not order:
            raise NoEligibleModelError(f"no model is left to ask ({purpose.value})")
        if not permitted:
            raise LocalityError(
                f"the request is sensitive and no on-prem model may answer it ({purpose.value}: "
                f"{', '.join(spec.name for spec in order)} refused)"
            )
        deadline = min(ctx.deadline, time.monotonic() + self.deadline_s)
        attempts: list[Attempt] = []
        last: UpstreamError | None = None
        skipped = []
        for spec in permitted:
            if not self.breaker.allow(spec.name):
                attempts.append(Attempt(spec.name, "circuit open", 0.0))
                skipped.append(spec)
                continue
            found, last = await self._try(ctx, purpose, spec, body, stream, deadline, attempts, last)
            if found is not None:
                return found
        for spec in skipped if len(skipped) == len(permitted) else ():  # every circuit open: try them anyway
            if self.breaker.held(spec.name):  # ... unless it asked to be left alone (Retry-After)
                continue
            found, last = await self._try(ctx, purpose, spec, body, stream, deadline, attempts, last)
            if found is not None:
                return found
        summary = "; ".join(f"{a.model}: {a.outcome}" for a in attempts)
        if isinstance(last, UpstreamTimeoutError) or time.monotonic() >= deadline:
            raise UpstreamTimeoutError(f"no upstream answered in time ({summary})")
        raise UpstreamError(f"every qualifying upstream failed ({summary})")

    def settle_soon(
        self,
        dispatched: Dispatched,
        cost_usd: float | None,
        usage: Usage | None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Settle a stream's attempt once its cost is known (the stream has ended, or the client left it),
        then call ``then`` (the request's reservation is settled after its attempts are charged)."""
        hold, dispatched.hold = dispatched.hold, None
        if hold is None:
            if then is not None:
                then()
            return

        async def settle(hold: Hold) -> None:
            try:
                await self.spend.settle(hold, cost_usd, usage)
            finally:
                if then is not None:
                    then()

        self._settling.run(settle(hold))

    async def _try(
        self,
        ctx: RequestContext,
        purpose: Purpose,
        spec: ModelSpec,
        body: dict[str, Any],
        stream: bool,
        deadline: float,
        attempts: list[Attempt],
        last: UpstreamError | None,
    ) -> tuple[Dispatched | None, UpstreamError | None]:
        for attempt in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, UpstreamTimeoutError("the total deadline passed")
            hold = await self.spend.reserve(SpendClaim(ctx, spec, purpose, body))
            started = time.perf_counter()
            try:
                reply = await self._attempt(
                    ctx,
                    spec,
                    body,
                    stream,
                    min(self.attempt_timeout_s, remaining),
                    min(self.first_byte_timeout_s, remaining),
                )
            except UpstreamRejectedError:
                self.breaker.release(spec.name)
                await self.spend.settle(hold, 0.0)
                raise
            except UpstreamError as exc:
                await self.spend.settle(hold, 0.0 if exc.retry_same else None)
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
                self._settling.run(self.spend.settle(hold, None))
                raise
            self.breaker.success(spec.name)
            attempts.append(Attempt(spec.name, "ok", (time.perf_counter() - started) * 1000))
            if stream:
                return Dispatched(spec, reply, attempts, hold), last
            usage = reply.completion.usage if reply.completion is not None else None
            await self.spend.settle(hold, usage_cost(spec, usage) if usage is not None else None, usage)
            return Dispatched(spec, reply, attempts), last
        return None, last

    async def _attempt(
        self,
        ctx: RequestContext,
        spec: ModelSpec,
        body: dict[str, Any],
        stream: bool,
        timeout_s: float,
        first_byte_s: float,
    ) -> UpstreamReply:
        if not allowed(ctx, spec):  # the last line before the network, whatever the caller did
            raise LocalityError(f"the request is sensitive: {spec.name} is not on-prem")
        with start_span(self.tracer, "ladder.core.upstream", SpanKind.CLIENT) as span:
            span.set_attribute("ladder.model", spec.name)
            span.set_attribute("gen_ai.request.model", spec.upstream.model)
            span.set_attribute("url.full", upstream_url(spec))
            try:
                headers = inject_context({}) if self.tracer is not None else {}
                reply = await self._client.send(
                    spec, body, timeout_s, stream, headers, first_byte_s=first_byte_s
                )
            except UpstreamError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            span.set_attribute("http.response.status_code", reply.status)
            return reply
