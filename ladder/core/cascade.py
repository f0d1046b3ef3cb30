"""Answer-aware escalation: the cascade's settings, the signals read from an answer, and the rungs.

Shared by the gateway's cascade mode and the offline evaluation (``ladder/training/cascade.py``); the rule that
keeps an answer or escalates is `ladder.core.cascade_step`, how an answer is read and compared
`ladder.core.answers`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ladder.core import policy
from ladder.core.confidence_plan import CalibratedPlan
from ladder.core.logprobs import TokenLogprob
from ladder.core.policy import Candidate, ChoiceOptions


def mean_logprob(tokens: Sequence[TokenLogprob] | None) -> float | None:
    """Mean logprob of an answer's tokens, non-finite ones (-inf) left out; None when the upstream sent none."""
    values = [t.logprob for t in tokens or () if math.isfinite(t.logprob)]
    return sum(values) / len(values) if values else None


class CascadeConfig(BaseModel):
    """``routing.cascade`` in the pool file: how the gateway's cascade mode starts, scores and escalates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: Literal["router", "cheapest"] = Field(
        default="router",
        description="First rung: the prefill router's choice, or the cheapest eligible model",
    )
    first_tolerance: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="With first: router, the first rung is the cheapest eligible model within this tolerance "
        "of the likeliest one (default: the request's own routing decision)",
    )
    max_stages: int = Field(default=3, ge=1, le=8, description="Most models asked for one request")
    router_accept_p: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="The router's P(correct) for the answering model at or above which its answer is kept "
        "unread (escalate only where the router is unsure)",
    )
    min_gain: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Escalate only to a model the router deems at least this much likelier to be right",
    )
    min_mean_logprob: float = Field(
        default=-0.35, le=0, description="Mean token logprob at or above which an answer is confident enough"
    )
    logprobs: bool = Field(default=True, description="Ask upstreams for token logprobs (dropped if refused)")
    agreement: bool = Field(
        default=False,
        description="Also ask the cheapest other model on the first rung; the answers must agree (a second "
        "paid call per request)",
    )
    unsure_gap: tuple[float, float] | None = Field(
        default=None,
        description="(lower, upper) on the router's P(correct) for the first rung's model minus that of the "
        "likeliest eligible model: at or above upper its answer is kept unread, below lower it escalates "
        "unread, in between a second opinion is asked and must agree ('ladder evaluate' reports both for "
        "its 'unsure (router)' cascade plans)",
    )
    second_opinion: str | None = Field(
        default=None,
        description="With unsure_gap: the pool model asked for the second opinion (default, or when it may "
        "not answer the request: the cheapest other eligible model)",
    )
    escalate_to: str | None = Field(
        default=None,
        description="With unsure_gap: the pool model an unsure first answer escalates to, whose answer is "
        "kept when max_stages is 2 (default, or when it may not answer the request: the likeliest eligible "
        "model); a first rung that is this model is kept",
    )
    plan: CalibratedPlan | None = Field(
        default=None,
        description="A calibrated cascade as `ladder evaluate-confidence --write-plan` costed it: it decides "
        "every step (the other settings but logprobs are not read)",
    )

    @model_validator(mode="after")
    def _one_second_opinion_rule(self) -> CascadeConfig:
        if self.unsure_gap is not None:
            lower, upper = self.unsure_gap
            if not (math.isfinite(lower) and math.isfinite(upper) and lower <= upper):
                raise ValueError("unsure_gap must be two finite numbers [lower, upper] with lower <= upper")
            if self.agreement:
                raise ValueError(
                    "agreement asks a second opinion on every request and unsure_gap only where the router "
                    "is unsure: set one of them"
                )
        if self.second_opinion is not None and self.unsure_gap is None:
            raise ValueError("second_opinion names the model asked where unsure: it needs unsure_gap")
        if self.escalate_to is not None and self.unsure_gap is None:
            raise ValueError("escalate_to names where an unsure answer goes: it needs unsure_gap")
        if self.plan is not None and (self.agreement or self.unsure_gap is not None):
            raise ValueError("plan decides every step: it takes neither agreement nor unsure_gap")
        if self.first_tolerance is not None and self.first != "router":
            raise ValueError("first_tolerance chooses the router's first rung: it needs first: router")
        return self

    def named_models(self) -> dict[str, str]:
        """The pool models these settings name, by setting."""
        named = {"second_opinion": self.second_opinion, "escalate_to": self.escalate_to}
        if self.plan is not None:
            named.update({f"plan.models.{i}.name": m for i, m in enumerate(self.plan.names)})
        return {k: v for k, v in named.items() if v is not None}


@dataclass(frozen=True)
class Verdict:
    """What the acceptance rule made of one stage's answer."""

    accepted: bool
    reason: str


@dataclass(frozen=True)
class Signals:
    """What is known about one stage's answer when it is judged (None: the signal is not available)."""

    router_p: float
    mean_logprob: float | None = None
    agrees: bool | None = None
    router_gap: float | None = None  # with unsure_gap: router_p minus the likeliest eligible model's P

    def to_dict(self) -> dict[str, Any]:
        return {
            "router_p": round(self.router_p, 6),
            "mean_logprob": None if self.mean_logprob is None else round(self.mean_logprob, 6),
            "agrees": self.agrees,
            "router_gap": None if self.router_gap is None else round(self.router_gap, 6),
        }


def by_price(candidate: Candidate) -> tuple[float, float, str]:
    """The price ladder's order: cheapest first, the likelier model first at equal price."""
    return (candidate.expected_cost_usd, -candidate.p_correct, candidate.name)


def _one_row(eligible: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.array([[c.p_correct for c in eligible]], dtype=np.float64)
    prices = np.array([[c.expected_cost_usd for c in eligible]], dtype=np.float64)
    return scores, prices


def likeliest(eligible: Sequence[Candidate]) -> Candidate:
    """The eligible model the router deems likeliest right (ties as `ladder.core.policy.choose` settles
    them)."""
    return eligible[int(policy.likeliest(*_one_row(eligible))[0])]


def first_rung(eligible: Sequence[Candidate], config: CascadeConfig, routed: str) -> Candidate:
    """Who answers first: the cheapest eligible model, the cheapest within ``first_tolerance`` of the
    likeliest (a one-row `ladder.core.policy.choose`, as offline evaluation picks it over arrays), or the
    request's routing decision."""
    if config.first == "cheapest":
        tolerance = math.inf
    elif config.first_tolerance is not None:
        tolerance = config.first_tolerance
    else:
        return next(c for c in eligible if c.name == routed)
    return eligible[int(policy.choose(*_one_row(eligible), ChoiceOptions(tolerance=tolerance)).model[0])]


def second_opinion_order(eligible: Sequence[Candidate], answering: str, named: str | None) -> list[Candidate]:
    """Who may give a second opinion on ``answering``'s answer, in order: the named model, then the others
    by price."""
    others = [c for c in eligible if c.name != answering]
    return sorted(others, key=lambda c: (c.name != named, *by_price(c)))


def escalation_target(eligible: Sequence[Candidate], current: Candidate, named: str | None) -> Candidate | None:
    """Where ``unsure_gap`` escalates ``current``'s answer: the named model (``escalate_to``) if eligible,
    else the likeliest one; None when that is ``current`` itself (its answer is kept)."""
    target = next((c for c in eligible if c.name == named), None) or likeliest(eligible)
    return None if target.name == current.name else target
