"""The gateway's state and its routing step: request options, capability filter, batched scoring, policy."""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry.trace import Tracer

from ladder.core.decision_record import CascadeRecord, DecisionRecord, Endpoint, TokenCounts
from ladder.core.errors import UnknownModelError
from ladder.core.policy import Decision, DecisionOptions, PolicyName
from ladder.core.pool import ModelSpec, PoolConfig
from ladder.core.pricing import Usage
from ladder.core.router import Router
from ladder.core.sensitivity import SensitiveScan
from ladder.gateway.audit import AuditLog
from ladder.gateway.batcher import ScoreBatcher, Scored
from ladder.gateway.capabilities import Requirements, exclusions, requirements
from ladder.gateway.context import RequestContext, Sensitivity
from ladder.gateway.costs import Cost
from ladder.gateway.dispatch import Dispatched, Dispatcher
from ladder.gateway.inflight import InFlight
from ladder.gateway.keys import Client, ClientKeys, Limits, restrict
from ladder.gateway.latency import GatewayLatency, latency_budget
from ladder.gateway.metrics import GatewayMetrics
from ladder.gateway.sessions import SessionOutcome, Sessions
from ladder.gateway.settings import Settings
from ladder.gateway.shadow import ShadowJudge
from ladder.gateway.spend import (
    BudgetHook,
    Reservation,
    SpendGuard,
    SpendHook,
    held_input_tokens,
    max_output_tokens,
    worst_case_usd,
)
from ladder.gateway.state import MemoryState, StateStore
from ladder.gateway.tracing import (
    annotate_current_span,
    decision_attributes,
    genai_request_attributes,
    genai_response_attributes,
    start_span,
)
from ladder.gateway.traffic_store import TrafficStore
from ladder.gateway.triton_scorer import TritonScorer

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Routed:
    """A routed request: its context, the decision and what it was based on."""

    ctx: RequestContext
    decision: Decision
    needs: Requirements
    scored: Scored
    routing_ms: float
    started: float
    session: SessionOutcome | None = None  # what session affinity did to the decision
    correlation_id: str | None = None  # the client's own ``x-request-id``, kept beside the server's id

    @property
    def request_id(self) -> str:
        return self.ctx.request_id

    @property
    def client(self) -> Client:
        """Who asked (the key's profile name; never the key)."""
        return self.ctx.client

    def headers(self) -> dict[str, str]:
        """Routing metadata as ``x-ladder-*`` response headers."""
        d = self.decision
        headers = {
            "x-ladder-request-id": self.request_id,
            "x-ladder-routed-model": d.model,
            "x-ladder-policy": d.policy.value,
            "x-ladder-tolerance": f"{d.tolerance:g}",
            "x-ladder-p-correct": ",".join(f"{c.name}={c.p_correct:.4f}" for c in d.candidates),
            "x-ladder-expected-cost-usd": f"{d.chosen.expected_cost_usd:.8f}",
            "x-ladder-routing-ms": f"{self.routing_ms:.3f}",
        }
        if d.threshold is not None:
            headers["x-ladder-threshold"] = f"{d.threshold:.4f}"
        if self.session is not None:
            headers["x-ladder-session"] = self.session.status
        return headers

    def decision_record(
        self,
        endpoint: Endpoint | None = None,
        dispatched: Dispatched | None = None,
        usage: Usage | None = None,
        cost: Cost | None = None,
        error: str | None = None,
        cascade: CascadeRecord | None = None,
    ) -> DecisionRecord:
        """The decision's record: what was decided, and once answered (``dispatched``: the model that
        answered and the attempts before it) what it used and cost; ``cascade`` only for a cascade."""
        d = self.decision
        record = DecisionRecord(
            request_id=self.request_id,
            correlation_id=self.correlation_id,
            endpoint=endpoint,
            chosen_model=d.model,
            answered_model=dispatched.model.name if dispatched is not None else None,
            policy=d.policy,
            tolerance=d.tolerance,
            threshold=d.threshold,
            p_correct={c.name: round(c.p_correct, 6) for c in d.candidates},
            expected_cost_usd={c.name: c.expected_cost_usd for c in d.candidates},
            excluded={c.name: c.excluded_because for c in d.candidates if c.excluded_because},
            sensitive=self.needs.sensitive,
            sensitive_because=self.ctx.sensitivity.because,
            usage=None
            if usage is None
            else TokenCounts(prompt=usage.prompt_tokens, completion=usage.completion_tokens),
            cost_usd=cost.cost_usd if cost is not None else None,
            baseline_model=cost.baseline_model if cost is not None else None,
            baseline_cost_usd=cost.baseline_cost_usd if cost is not None else None,
            savings_usd=cost.savings_usd if cost is not None else None,
            fallback=[a.record() for a in dispatched.failures] if dispatched is not None else [],
            routing_ms=round(self.routing_ms, 3),
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            error=error,
            client=self.client.name,
            session=self.session.status if self.session is not None else None,
        )
        # a cascade's stages are on its line only: other lines have no ``cascade`` key
        return record if cascade is None else record.model_copy(update={"cascade": cascade})

    def summary(self) -> dict[str, Any]:
        """The decision as the ``ladder`` object of a response body: a public shape of its own (the chosen
        model as ``routed_model``, its expected cost as ``expected_cost_usd`` and every model's as
        ``expected_costs_usd``, the session in full), built from the decision's record once per request
        (the response and its span both read it)."""
        return dict(self._summary)

    @functools.cached_property
    def _summary(self) -> dict[str, Any]:
        record = self.decision_record()
        return {
            "request_id": record.request_id,
            "routed_model": record.chosen_model,
            "policy": self.decision.policy.value,  # the enum's value, as the record's line writes it
            "tolerance": record.tolerance,
            "threshold": record.threshold,
            "reason": self.decision.reason,
            "p_correct": record.p_correct,
            "expected_cost_usd": self.decision.chosen.expected_cost_usd,
            "expected_costs_usd": record.expected_cost_usd,
            "excluded": record.excluded,
            "routed_tokens": self.scored.routed_tokens,
            "truncated": self.scored.truncated,
            "routing_ms": record.routing_ms,
            "client": record.client,
            "session": self.session.to_dict() if self.session is not None else None,
        }


class Gateway:
    """Everything a request handler needs, built once by the app factory."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        batcher: ScoreBatcher,
        dispatcher: Dispatcher,
        metrics: GatewayMetrics,
        audit: AuditLog,
        tracer: Tracer | None,
        baseline: ModelSpec,
        triton: TritonScorer | None = None,
        traffic: TrafficStore | None = None,
        shadow: ShadowJudge | None = None,
        state: StateStore | None = None,
        spend_hook: SpendHook | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.pool: PoolConfig = router.pool
        self.names = frozenset(self.pool.names)
        self.batcher = batcher
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.audit = audit
        self.tracer = tracer
        self.baseline = baseline
        self.triton = triton  # the Triton scorer behind ``router`` (scorer: triton), for /readyz
        self.traffic = traffic  # decisions kept for /v1/feedback and retraining (settings.traffic_db)
        self.shadow = shadow  # judges a share of answers in the background (settings.shadow)
        # decided once per request (context()): the gateway's patterns and the pool's
        self.scan = SensitiveScan.of([*settings.sensitive_patterns, *self.pool.sensitive_patterns])
        self.latency = GatewayLatency(router, metrics)  # expected latency per model, for latency budgets
        self.state = state or MemoryState()  # sessions, rate limits, spend: Redis when redis_url is set
        self.clients = ClientKeys(
            settings.api_keys, settings.key_profiles, settings.auth_disabled, self.names
        )
        fail_closed = settings.state_unavailable == "closed"
        self.limits = Limits(self.state, metrics, settings.redis_prefix, fail_closed)
        hold_ttl_s = 2 * max(settings.deadline_s, settings.stream_deadline_s or 0.0) + 60
        self.spend = SpendGuard(self.limits, hold_ttl_s, fail_closed)
        # every paid upstream attempt is charged to the request's reservation (``spend_hook``: a test seam)
        self.dispatcher.spend = spend_hook or BudgetHook(self.spend)
        self.inflight = InFlight(metrics)  # max_concurrent / max_streams per key (InFlightMiddleware)
        self.sessions = Sessions(
            self.state,
            enabled=settings.session_affinity,
            ttl_s=settings.session_ttl_s,
            margin=settings.session_margin,
            header=settings.session_header,
            prefix=settings.redis_prefix,
            on_outcome=lambda status: metrics.sessions.labels(status).inc(),
            on_error=lambda operation: metrics.state_errors.labels(operation).inc(),
        )

    def scorer_state(self) -> tuple[bool, dict[str, Any]]:
        """Whether the scorer can answer, and its state (Triton up, or which fallback answers)."""
        if self.triton is None:
            return True, {"backend": "embedded"}
        state = self.triton.describe()
        return self.triton.up or self.triton.settings.on_unavailable != "error", state

    def request_id(self, headers: Mapping[str, str]) -> str:
        """The stored id: the one the request-log middleware generated for this request (``x-ladder-...``);
        a client's ``x-request-id`` is only a correlation field, so it can never name another's request."""
        given = headers.get("x-ladder-request-id", "")
        return given if REQUEST_ID.match(given) else uuid.uuid4().hex

    def context(self, client: Client, headers: Mapping[str, str], body: Mapping[str, Any]) -> RequestContext:
        """The request's context, built once: ``body`` is everything the client sent (every key and string
        of it is scanned for the sensitive patterns, whatever part of it is forwarded)."""
        header = headers.get(self.settings.sensitive_header)
        sensitivity = Sensitivity.decide(header, client.profile, body, self.scan)
        deadline = time.monotonic() + self.settings.deadline_s
        return RequestContext(client, self.request_id(headers), sensitivity, deadline)

    async def reserve(
        self, routed: Routed, models: list[ModelSpec], body: Mapping[str, Any], every: bool = False
    ) -> Reservation:
        """Hold the worst case of an answer from any of ``models`` (``every``: from each of them, as a
        cascade may ask them all) against the client's budgets. It travels on the request's context: the
        dispatcher charges every paid attempt to it, and ``record`` settles it."""
        worst = 0.0  # nothing to hold against where there is no budget
        if any(b is not None for b in self.spend.budgets(routed.client)):
            out = max_output_tokens(dict(body), self.settings.reserve_output_tokens)
            tokens = held_input_tokens(routed.needs.input_tokens)
            worst = (
                sum(worst_case_usd([m], tokens, out) for m in models)
                if every
                else worst_case_usd(models, tokens, out)
            )
        reservation = await self.spend.reserve(routed.client, worst)
        routed.ctx.reservations.append(reservation)
        return reservation

    def release(self, routed: Routed, answered: bool = False) -> None:
        """Settle the request's reservations with what the dispatcher charged to them (and drop their holds);
        ``answered``: the request counts as one even if no upstream reported its usage."""
        for reservation in routed.ctx.reservations:
            reservation.settle(answered)

    def options(
        self,
        ctx: RequestContext,
        model: str,
        tolerance: float | None,
        models: list[str] | None,
        headers: Mapping[str, str] | None = None,
        max_latency_ms: float | None = None,
    ) -> DecisionOptions:
        """The request's ``model``: a policy name (``ladder``, ``ladder-0.1``) routes, a pool name pins.
        The client key's profile sets the default tolerance and allowed models; ``headers`` may carry a
        latency budget."""
        options = self.router.default_options()
        client = ctx.client
        profile = client.profile
        if profile is not None and profile.tolerance is not None:
            options = replace(options, tolerance=profile.tolerance)
        name = self.settings.policy_name
        if model in self.names:
            options = replace(options, pinned=model)
        elif model != name:
            suffix = model[len(name) + 1 :] if model.startswith(name + "-") else None
            options = self._suffix_options(options, model, suffix)
        if tolerance is not None:
            options = replace(options, tolerance=tolerance)
        if models is not None:
            options = replace(options, allowed=frozenset(models))
        budget = latency_budget(headers, max_latency_ms)
        if budget is not None:
            options = replace(options, excluded={**self.latency.exclusions(budget), **options.excluded})
        not_allowed = restrict(client, options.pinned, self.pool.names)
        if not_allowed:
            options = replace(options, excluded={**not_allowed, **options.excluded})
        return options

    def _suffix_options(self, options: DecisionOptions, model: str, suffix: str | None) -> DecisionOptions:
        name = self.settings.policy_name
        if suffix:
            try:
                value = float(suffix)
            except ValueError:
                value = -1.0
            if 0 <= value <= 1:
                return replace(options, tolerance=value)
            if suffix in {p.value for p in PolicyName if p is not PolicyName.BUDGET}:
                return replace(options, policy=PolicyName(suffix))
        raise UnknownModelError(
            f"unknown model {model!r}: use {name!r}, '{name}-<tolerance>' "
            f"or a pool model ({', '.join(self.pool.names)})"
        )

    async def route(
        self,
        ctx: RequestContext,
        body: Mapping[str, Any],
        text: str,
        options: DecisionOptions,
        headers: Mapping[str, str],
        session_hint: str | None = None,
        pin_session: bool = True,
    ) -> Routed:
        """Filter by capability, score (batched with concurrent requests), decide, keep the session's model
        when it still fits (``session_hint``: Anthropic's ``metadata.user_id``; ``pin_session=False`` reads
        the session without storing the decision)."""
        started = time.perf_counter()
        client = ctx.client
        needs = requirements(body, ctx.sensitive)
        options = replace(options, excluded={**options.excluded, **exclusions(self.pool, needs)})
        with start_span(self.tracer, "ladder.score") as span:
            scored = await self.batcher.score(text)
            span.set_attribute("ladder.routed_tokens", scored.routed_tokens)
        with start_span(self.tracer, "ladder.core.policy") as span:
            decision = self.router.decide_scores(scored.p_correct, needs.input_tokens, options)
            ref = self.sessions.ref(headers, body, session_hint, client.name, options)
            decision, session = await self.sessions.apply(ref, decision, write=pin_session)
            span.set_attribute("ladder.model", decision.model)
        routing_ms = (time.perf_counter() - started) * 1000
        self.metrics.routing_latency.observe(routing_ms / 1000)
        self.metrics.decisions.labels(decision.model).inc()
        given = headers.get("x-request-id")
        correlation_id = given if given and REQUEST_ID.match(given) else None
        routed = Routed(ctx, decision, needs, scored, routing_ms, started, session, correlation_id)
        annotate_current_span({**genai_request_attributes(body), **decision_attributes(routed.summary())})
        return routed

    def record(
        self,
        routed: Routed,
        endpoint: Endpoint,
        dispatched: Dispatched | None,
        usage: Usage | None,
        cost: Cost | None,
        prompt: str,
        error: str | None = None,
        response_id: str | None = None,
        finish_reasons: Sequence[str] = (),
        cascade: CascadeRecord | None = None,
    ) -> None:
        """Metrics, the client's usage, the span's GenAI attributes and one audit line for a finished
        request (``response_id`` and ``finish_reasons``: the upstream reply's, for the span; ``cascade``:
        a cascade's stages, for the record). Every paid upstream call was charged to the
        request's reservation by the dispatcher (a stream's here, once it has ended); the reservation is
        settled after that."""
        answered = dispatched.model.name if dispatched is not None else None
        if dispatched is None:
            self.release(routed)
        else:
            self.dispatcher.settle_soon(
                dispatched,
                cost.cost_usd if cost is not None else None,
                usage,
                then=lambda: self.release(routed, answered=True),
            )
            if error is None:
                self.sessions.answered_by(routed.session, routed.decision.model, dispatched.model.name)
            spec = dispatched.model
            annotate_current_span(
                genai_response_attributes(
                    spec.name,
                    spec.upstream.model,
                    str(spec.upstream.base_url),
                    usage.prompt_tokens if usage is not None else None,
                    usage.completion_tokens if usage is not None else None,
                    response_id,
                    finish_reasons,
                )
            )
        if dispatched is not None and error is None:
            elapsed_s = time.perf_counter() - routed.started - routed.routing_ms / 1000
            self.latency.observe(dispatched, usage, elapsed_s)
        if answered is not None and error is None:
            self.metrics.requests.labels(answered, endpoint).inc()
            if usage is not None:
                self.metrics.tokens.labels(answered, "prompt").inc(usage.prompt_tokens)
                self.metrics.tokens.labels(answered, "completion").inc(usage.completion_tokens)
            if cost is not None:
                self.metrics.cost.labels(answered).inc(cost.cost_usd)
                self.metrics.baseline_cost.labels(answered).inc(cost.baseline_cost_usd)
                self.metrics.savings.labels(answered).inc(max(0.0, cost.savings_usd))
        if not self.audit.enabled and self.traffic is None:
            return
        record = routed.decision_record(endpoint, dispatched, usage, cost, error, cascade)
        kept = (
            None if routed.ctx.sensitive else prompt
        )  # a sensitive prompt is never stored, not even redacted
        self.audit.write(record, prompt=kept)
        if self.traffic is not None:
            stored = self.audit.redact(kept) if self.audit.include_prompts and kept is not None else None
            self.traffic.remember(record, stored)
