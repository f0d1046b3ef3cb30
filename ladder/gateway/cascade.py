"""The gateway's cascade mode: a first rung answers; an acceptance rule keeps it or asks the next rung.

Opt-in per request (``model="ladder-cascade"`` or ``cascade: true``) or per key profile (``cascade: true``).
Every stage is a plain (non-streamed) upstream call, so its whole answer and token logprobs can be read before
anything reaches the client. A streamed request is held until an answer is accepted and then receives that
answer as one server-sent stream: the client never sees text that is later replaced by a better model's.
Thresholds live in the pool file (``routing.cascade``, `ladder.core.cascade.CascadeConfig`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ladder.core.answers import answers_agree
from ladder.core.cascade import (
    CascadeConfig,
    Signals,
    Verdict,
    by_price,
    escalation_target,
    first_rung,
    likeliest,
    mean_logprob,
    second_opinion_order,
)
from ladder.core.cascade_step import Action, judge
from ladder.core.decision_record import CascadeStage, TokenCounts
from ladder.core.errors import NoEligibleModelError, UpstreamRejectedError
from ladder.core.policy import Candidate
from ladder.core.pool import ModelSpec
from ladder.core.pricing import Usage
from ladder.core.upstream_replies import Completion
from ladder.gateway.context import Purpose, RequestContext
from ladder.gateway.costs import Cost, answer_cost
from ladder.gateway.dispatch import Dispatched
from ladder.gateway.errors import REQUEST_FAILURES, GatewayError, UpstreamError
from ladder.gateway.gateway import Gateway, Routed
from ladder.gateway.protocol import ChatCompletionCreateParams, extension
from ladder.gateway.tracing import start_span


def cascade_requested(gw: Gateway, ctx: RequestContext, params: ChatCompletionCreateParams) -> bool:
    """``model="<policy>-cascade"``, else the body's ``cascade``, else the key profile's; a pinned model
    never cascades."""
    if params.model == f"{gw.settings.policy_name}-cascade":
        return True
    if params.model in gw.names:
        return False
    asked = extension(params, "cascade")
    if asked is not None:
        return bool(asked)
    return bool(ctx.profile is not None and ctx.profile.cascade)


@dataclass(eq=False)  # stages compare by identity
class Stage:
    """One upstream answer in a cascade, what it cost and what the acceptance rule made of it."""

    role: str  # "answer", "second opinion" or "self-check"
    dispatched: Dispatched
    completion: Completion
    usage: Usage | None
    cost: Cost | None
    signals: Signals | None = None
    verdict: Verdict | None = None
    note: str | None = None  # what a stage that is not judged found (a self-check's P(yes))

    @property
    def model(self) -> str:
        return self.dispatched.model.name

    def record(self) -> CascadeStage:
        """The stage as the decision record (and the response's ``ladder.cascade``) lists it."""
        return CascadeStage(
            model=self.model,
            role=self.role,
            **(self.signals.to_dict() if self.signals is not None else {}),
            accepted=None if self.verdict is None else self.verdict.accepted,
            reason=self.note if self.verdict is None else self.verdict.reason,
            usage=None
            if self.usage is None
            else TokenCounts(prompt=self.usage.prompt_tokens, completion=self.usage.completion_tokens),
            cost_usd=None if self.cost is None else self.cost.cost_usd,
            ms=round(sum(a.ms for a in self.dispatched.attempts), 2),
            fallback=[a.record() for a in self.dispatched.failures],
        )


class Cascade:
    """One request's cascade: the rungs it may climb and the stages it has run."""

    def __init__(self, gw: Gateway, routed: Routed, body: dict[str, Any], request: Request) -> None:
        self.gw = gw
        self.routed = routed
        self.config: CascadeConfig = gw.pool.routing.cascade
        self.request = request
        self.client_logprobs = bool(body.get("logprobs"))
        self.body = dict(body)
        if self.config.logprobs and not self.client_logprobs:
            # top_logprobs too: llama.cpp's Python server returns no logprobs without it
            self.body.update({"logprobs": True, "top_logprobs": body.get("top_logprobs") or 1})
        self.plain = {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}
        self.refused_logprobs: set[str] = set()
        reachable = {s.name for s in gw.dispatcher.permitted(routed.ctx, gw.pool.models)}
        self.eligible = {c.name: c for c in routed.decision.candidates if c.eligible and c.name in reachable}
        self.stages: list[Stage] = []

    def candidates(self) -> list[Candidate]:
        """The models that may answer this request, with the router's standing for each."""
        return list(self.eligible.values())

    def first_rung(self) -> Candidate:
        return first_rung(self.candidates(), self.config, self.routed.decision.model)

    def next_rung(self, current: Candidate) -> Candidate | None:
        """The cheapest model above ``current`` on the price ladder that the router deems likelier right."""
        asked = {s.model for s in self.stages}
        higher = [
            c
            for c in self.eligible.values()
            if c.name not in asked
            and c.expected_cost_usd > current.expected_cost_usd
            and c.p_correct > current.p_correct + self.config.min_gain
        ]
        return min(higher, key=by_price) if higher else None

    def order(self, first: Candidate) -> list[ModelSpec]:
        """``first``, then (if it fails) the decision's fallback order, less the models already asked."""
        asked = {s.model for s in self.stages}
        names = [first.name, *(n for n in self.routed.decision.fallback_order if n != first.name)]
        specs = [self.gw.pool.model(n) for n in names if n not in asked]
        return self.gw.dispatcher.permitted(self.routed.ctx, specs)

    async def ask(self, first: Candidate, role: str) -> Stage:
        """One stage; an answer falls back along the decision's order, a second opinion asks one model."""
        order = self.order(first) if role == "answer" else [self.gw.pool.model(first.name)]
        purpose = Purpose.CASCADE_STAGE if role == "answer" else Purpose.SECOND_OPINION
        stage = await self.call(order, role, purpose)
        if role == "answer":
            self.stages.append(stage)
        return stage

    async def call(
        self, order: list[ModelSpec], role: str, purpose: Purpose, body: dict[str, Any] | None = None
    ) -> Stage:
        """One upstream call of this cascade, through the dispatcher; ``body`` defaults to the request's
        own, with logprobs asked of an upstream that has not refused them (one that refuses is asked again
        without)."""
        ctx = self.routed.ctx
        with start_span(self.gw.tracer, "ladder.core.cascade.stage") as span:
            span.set_attribute("ladder.core.cascade.role", role)
            span.set_attribute("ladder.core.cascade.index", len(self.stages))
            if body is not None:
                dispatched = await self.gw.dispatcher.send(ctx, order, body, False, purpose)
            else:
                try:
                    body = self.plain if order[0].name in self.refused_logprobs else self.body
                    dispatched = await self.gw.dispatcher.send(ctx, order, body, False, purpose)
                except UpstreamRejectedError:
                    if not self.config.logprobs or self.client_logprobs:
                        raise
                    self.refused_logprobs.add(order[0].name)  # it refuses logprobs: the other signals decide
                    dispatched = await self.gw.dispatcher.send(ctx, order, self.plain, False, purpose)
            completion = dispatched.completion
            usage = completion.usage
            cost = answer_cost(dispatched.model, self.gw.baseline, usage) if usage is not None else None
            span.set_attribute("ladder.model", dispatched.model.name)
            return Stage(role, dispatched, completion, usage, cost)

    def signals(self, stage: Stage, second: Stage | None, gap: float | None = None) -> Signals:
        agrees = answers_agree(stage.completion.text, second.completion.text) if second is not None else None
        return Signals(
            router_p=self.eligible[stage.model].p_correct if stage.model in self.eligible else 0.0,
            mean_logprob=mean_logprob(stage.completion.logprobs),
            agrees=agrees,
            router_gap=gap,
        )

    def router_gap(self, stage: Stage) -> float | None:
        """With ``unsure_gap``: the router's P(correct) for the answering model minus the likeliest eligible
        model's (None when the answering model is not among the eligible)."""
        if self.config.unsure_gap is None or stage.model not in self.eligible:
            return None
        return self.eligible[stage.model].p_correct - likeliest(self.candidates()).p_correct

    async def second_opinion_where_unsure(self, stage: Stage) -> Stage | None:
        """The second opinion ``unsure_gap`` asks for (None when no other model may answer, or it failed)."""
        others = second_opinion_order(self.candidates(), stage.model, self.config.second_opinion)
        if not others:
            return None
        try:
            return await self.ask(others[0], "second opinion")
        except REQUEST_FAILURES:
            return None  # the other signals decide

    async def run(self) -> tuple[Stage, Stage | None]:
        """Climb until an answer is accepted; the accepted stage and the second opinion, if one was asked.

        A failure on a later rung keeps the last answer received (it is returned, marked as such)."""
        rung: Candidate | None = self.first_rung()
        second: Stage | None = None
        while rung is not None:
            try:
                if not self.stages and self.config.agreement and len(self.eligible) > 1:
                    stage, second = await self._with_second_opinion(rung)
                elif second is not None and second.model == rung.name and second not in self.stages:
                    stage = second  # the second opinion is this rung's answer, already paid for
                    stage.role = "answer"
                    self.stages.append(stage)
                else:
                    stage = await self.ask(rung, "answer")
            except (GatewayError, UpstreamError, NoEligibleModelError) as exc:
                if not self.stages:
                    raise
                kept = self.stages[-1]
                kept.verdict = Verdict(True, f"kept: escalation failed ({type(exc).__name__}: {exc})")
                return kept, second
            current = self.eligible.get(stage.model, rung)
            banded = self.config.unsure_gap is not None and len(self.stages) == 1
            nxt = (
                escalation_target(self.candidates(), current, self.config.escalate_to)
                if banded
                else self.next_rung(current)
            )
            last = nxt is None or len(self.stages) >= self.config.max_stages
            gap = self.router_gap(stage) if banded and not last else None
            signals = self.signals(stage, second if len(self.stages) == 1 else None, gap)
            judged = judge(signals, self.config, last, asked=signals.agrees is not None)
            if judged.action is Action.ASK:
                second = await self.second_opinion_where_unsure(stage)
                signals = self.signals(stage, second, gap)
                judged = judge(signals, self.config, last, asked=True)
            stage.signals, stage.verdict = signals, Verdict(judged.accepted, judged.reason)
            verdict = "accepted" if stage.verdict.accepted else "escalated"
            self.gw.metrics.cascade_stages.labels(stage.model, verdict).inc()
            if stage.verdict.accepted:
                return stage, second
            rung = nxt
        raise AssertionError("the last rung always accepts")  # pragma: no cover

    async def _with_second_opinion(self, rung: Candidate) -> tuple[Stage, Stage | None]:
        others = sorted(
            (c for c in self.eligible.values() if c.name != rung.name),
            key=by_price,
        )
        first, second = await asyncio.gather(
            self.ask(rung, "answer"), self.ask(others[0], "second opinion"), return_exceptions=True
        )
        if isinstance(first, BaseException):
            raise first
        if isinstance(second, BaseException):
            if not isinstance(second, REQUEST_FAILURES):
                raise second
            return first, None  # no second opinion: the other signals decide
        return first, second
