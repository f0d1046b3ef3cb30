"""Cascade plans: who answers first, who gives a second opinion and when, and how the gateway serves one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ladder.core.policy import ChoiceOptions, choose

CHEAP_RUNGS = 3
ROUTER_TOLERANCES = (0.05, 0.1, 0.2)
SERVED_ROUTER_ACCEPT_P = 1.0
"""The pool setting that switches off keeping an answer on the router's certainty alone (plans read their
own keep score instead); offline costing applies the same setting."""


@dataclass
class CascadeSide:
    """One side (training or held-out) of a cascade evaluation, aligned: questions x models."""

    labels: np.ndarray
    costs: np.ndarray
    answers: np.ndarray  # object: str or None
    logprobs: np.ndarray | None
    prefill_p: np.ndarray  # out-of-fold on training rows, the checkpoint's on held-out rows
    prompt: np.ndarray  # prompt embeddings


@dataclass(frozen=True)
class Plan:
    """Who answers first (a model, or the prefill router at a tolerance), who gives a second opinion, the
    acceptance rule, and the top rung escalated to.

    Rule ``unsure`` reads a keep score (``score``: the learned scorer, or the router's gap: P(first) minus
    the likeliest model's P, as the gateway's ``unsure_gap`` reads it)
    with two thresholds: above the upper one the answer is kept, below the lower one it escalates, and in
    between model ``second`` is asked and the answer is kept when it agrees.
    """

    first: int | None
    router_tolerance: float | None
    verifier: bool  # a second opinion on every question (the cheapest other model)
    rule: str  # agreement | confidence | scorer | unsure
    top: int
    second: int | None = None  # rule "unsure": the model asked where the keep score is unsure
    score: str = "scorer"  # rule "unsure": scorer | router

    @property
    def rule_name(self) -> str:
        """The rule as reports name it."""
        return self.rule if self.rule != "unsure" else f"unsure ({self.score})"

    def describe(self, names: Sequence[str]) -> dict[str, Any]:
        first = names[self.first] if self.first is not None else f"router@{self.router_tolerance:g}"
        second = "cheapest other model" if self.verifier else None
        if self.rule == "unsure" and self.second is not None:
            second = f"{names[self.second]} where unsure"
        return {
            "first": first,
            "second_opinion": second,
            "rule": self.rule_name,
            "top": names[self.top],
            "uses_router": self.router_tolerance is not None,
        }


def cheapest_other(side: CascadeSide, answering: np.ndarray) -> np.ndarray:
    """Per question, the cheapest model other than ``answering`` by that question's expected cost, the
    likelier one at equal cost (the gateway's price order, `ladder.core.cascade.by_price`)."""
    costs = np.where(np.arange(side.costs.shape[1]) == answering[:, None], np.inf, side.costs)
    return np.asarray(np.lexsort((-side.prefill_p.T, costs.T), axis=0)[0])


def answering_models(plan: Plan, side: CascadeSide) -> tuple[np.ndarray, np.ndarray | None]:
    """Per question: the first model, and the second-opinion model or None (plan ``second``, else the
    cheapest other one; where the first model is ``second``, the cheapest other than it), chosen as the
    gateway chooses them for that question."""
    n = len(side.labels)
    if plan.first is not None:
        first = np.full(n, plan.first)
    else:
        assert plan.router_tolerance is not None
        first = choose(side.prefill_p, side.costs, ChoiceOptions(tolerance=plan.router_tolerance)).model
    if plan.rule == "unsure" and plan.second is not None:
        return first, np.where(first == plan.second, cheapest_other(side, first), plan.second)
    if not plan.verifier:
        return first, None
    return first, cheapest_other(side, first)


def top_rung(labels: np.ndarray, costs: np.ndarray) -> int:
    """The model every plan escalates to: the most accurate on these rows, the cheaper one at equal
    accuracy."""
    accuracy, cost = labels.mean(axis=0), costs.mean(axis=0)
    return int(max(range(len(accuracy)), key=lambda j: (accuracy[j], -cost[j])))


def plans(names: Sequence[str], train: CascadeSide) -> list[Plan]:
    """Cheap-first plans (each of the cheapest rungs, with and without a second opinion) and router-first
    plans, all escalating to the most accurate model on the training rows."""
    if len(names) < 2:
        return []
    accuracy = train.labels.mean(axis=0)
    cost = train.costs.mean(axis=0)
    top = top_rung(train.labels, train.costs)
    cheap = [j for j in np.argsort(cost, kind="stable").tolist() if j != top][:CHEAP_RUNGS]
    has_logprobs = train.logprobs is not None and not np.isnan(train.logprobs).all()
    out = []
    for j in cheap:
        out.append(Plan(j, None, True, "agreement", top))
        out.append(Plan(j, None, False, "scorer", top))
        out.append(Plan(j, None, True, "scorer", top))
        if has_logprobs:
            out.append(Plan(j, None, False, "confidence", top))
        out += unsure_plans(j, None, top, accuracy, cost)
    for tolerance in ROUTER_TOLERANCES:
        out.append(Plan(None, tolerance, False, "scorer", top))
        out.append(Plan(None, tolerance, True, "scorer", top))
        out += unsure_plans(None, tolerance, top, accuracy, cost)
    return out


def unsure_plans(
    first: int | None, tolerance: float | None, top: int, accuracy: np.ndarray, cost: np.ndarray
) -> list[Plan]:
    """Second opinions asked only where the keep score is unsure: from the cheapest other model and from the
    most accurate model cheaper than the top one, each read by the learned scorer and by the router."""
    below_top = [j for j in range(len(cost)) if j not in (first, top) and cost[j] < cost[top]]
    if not below_top:
        return []
    seconds = {
        min(below_top, key=lambda j: (cost[j], -accuracy[j])),
        max(below_top, key=lambda j: (accuracy[j], -cost[j])),
    }
    return [
        Plan(first, tolerance, False, "unsure", top, second, score)
        for second in sorted(seconds)
        for score in ("scorer", "router")
    ]


def research_only(plan: Plan, side: CascadeSide) -> str | None:
    """Why the gateway cannot serve ``plan`` exactly as costed (None: it can, with `gateway_settings`)."""
    if plan.rule != "unsure" or plan.score != "router" or plan.second is None:
        return (
            f"rule {plan.rule_name!r}: the gateway serves as costed only the "
            "router-gap rule ('unsure (router)')"
        )
    if plan.first is not None and not (np.argmin(side.costs, axis=1) == plan.first).all():
        return "its first model is not the cheapest on every question, as the gateway's first: cheapest is"
    return None


def gateway_settings(
    plan: Plan, names: Sequence[str], side: CascadeSide, setting: tuple[float, float]
) -> dict[str, Any] | None:
    """The pool file's ``routing.cascade`` that serves this plan at its chosen thresholds, for the plans the
    gateway runs exactly as costed here: a second opinion where the router's gap is unsure, after the
    cheapest model (when it is the cheapest on every question of ``side``) or the router's choice at the
    plan's tolerance. An open band edge becomes ±1, past any gap; the answer signals the plan does not read
    are switched off (logprobs, the router's own certainty), and the top rung's answer is final."""
    if research_only(plan, side) is not None or plan.second is None:
        return None
    if plan.first is not None:
        first: dict[str, Any] = {"first": "cheapest"}
    else:
        first = {"first": "router", "first_tolerance": plan.router_tolerance}
    lower, upper = (float(np.clip(t, -1.0, 1.0)) for t in setting)
    return {
        **first,
        "unsure_gap": [lower, upper],  # unrounded: the gateway compares the very same floats
        "second_opinion": names[plan.second],
        "escalate_to": names[plan.top],
        "max_stages": 2,
        "router_accept_p": SERVED_ROUTER_ACCEPT_P,
        "logprobs": False,
    }
