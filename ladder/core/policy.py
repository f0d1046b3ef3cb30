"""The routing decision: a pure function of P(correct), expected costs and request options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from ladder.core.errors import NoEligibleModelError, UnknownModelError


class PolicyName(StrEnum):
    CHEAPEST = "cheapest"
    ARGMAX = "argmax"
    UTILITY = "utility"
    BUDGET = "budget"


@dataclass(frozen=True)
class DecisionOptions:
    """What a single request may ask of the policy."""

    policy: PolicyName = PolicyName.CHEAPEST
    tolerance: float = 0.05
    cost_weight: float = 0.01
    allowed: frozenset[str] | None = None
    pinned: str | None = None
    excluded: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """One model's standing in a decision."""

    name: str
    p_correct: float
    expected_cost_usd: float
    eligible: bool
    excluded_because: str | None = None
    within_threshold: bool = False


@dataclass(frozen=True)
class Decision:
    """The chosen model and everything needed to audit why."""

    model: str
    policy: PolicyName
    tolerance: float
    threshold: float | None
    candidates: tuple[Candidate, ...]
    reason: str

    @property
    def chosen(self) -> Candidate:
        return next(c for c in self.candidates if c.name == self.model)

    @property
    def fallback_order(self) -> tuple[str, ...]:
        """Eligible models in the order to try them: the choice first, then by P(correct), then by cost."""
        rest = sorted(
            (c for c in self.candidates if c.eligible and c.name != self.model),
            key=lambda c: (-c.p_correct, c.expected_cost_usd, c.name),
        )
        return (self.model, *(c.name for c in rest))

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "policy": self.policy.value,
            "tolerance": self.tolerance,
            "threshold": self.threshold,
            "reason": self.reason,
            "expected_cost_usd": self.chosen.expected_cost_usd,
            "candidates": [
                {
                    "name": c.name,
                    "p_correct": round(c.p_correct, 6),
                    "expected_cost_usd": c.expected_cost_usd,
                    "eligible": c.eligible,
                    "within_threshold": c.within_threshold,
                    "excluded_because": c.excluded_because,
                }
                for c in self.candidates
            ],
        }


def _exclusions(names: Sequence[str], options: DecisionOptions) -> dict[str, str]:
    known = set(names)
    asked = set(options.allowed or ()) | ({options.pinned} if options.pinned else set())
    unknown = sorted(asked - known)
    if unknown:
        raise UnknownModelError(
            f"unknown model(s) {', '.join(map(repr, unknown))}; the pool has {sorted(known)}"
        )
    excluded = dict(options.excluded)
    for name in names:
        if options.allowed is not None and name not in options.allowed:
            excluded.setdefault(name, "not in the request's allowed models")
        if options.pinned is not None and name != options.pinned:
            excluded.setdefault(name, f"request pinned {options.pinned}")
    return excluded


def decide(p_correct: Mapping[str, float], costs: Mapping[str, float], options: DecisionOptions) -> Decision:
    """Pick a model. ``p_correct`` and ``costs`` (USD per request) are keyed by pool model name."""
    names = list(p_correct)
    excluded = _exclusions(names, options)
    eligible = [n for n in names if n not in excluded]
    if not eligible:
        reasons = "; ".join(f"{n}: {excluded[n]}" for n in names)
        raise NoEligibleModelError(f"no model qualifies for this request ({reasons})")

    policy = (
        PolicyName.ARGMAX
        if options.tolerance == 0 and options.policy is PolicyName.CHEAPEST
        else options.policy
    )
    threshold: float | None = None
    if options.pinned is not None:
        chosen = options.pinned
        within = {chosen}
        reason = f"pinned by the request to {chosen}"
    elif policy is PolicyName.UTILITY:
        utility = {n: p_correct[n] - options.cost_weight * costs[n] * 1000 for n in eligible}
        chosen = max(eligible, key=lambda n: (utility[n], -costs[n]))
        within = {chosen}
        reason = (
            f"highest utility P - {options.cost_weight:g} x cost per 1K requests"
            f" ({utility[chosen]:.4f}) among {len(eligible)} eligible models"
        )
    else:
        tolerance = 0.0 if policy is PolicyName.ARGMAX else options.tolerance
        best = max(p_correct[n] for n in eligible)
        threshold = best - tolerance
        within = {n for n in eligible if p_correct[n] >= threshold - 1e-12}
        chosen = min(within, key=lambda n: (costs[n], -p_correct[n], n))
        top = max(eligible, key=lambda n: (p_correct[n], -costs[n]))
        if chosen == top:
            reason = f"highest P(correct) {p_correct[chosen]:.3f}"
            if len(within) > 1:
                reason += f" and cheapest of the {len(within)} models within {tolerance:g} of it"
        else:
            saving = costs[top] / costs[chosen] if costs[chosen] > 0 else float("inf")
            reason = (
                f"cheapest of {len(within)} models with P(correct) >= {threshold:.3f} (best {best:.3f} - "
                f"tolerance {tolerance:g}); {top} is {p_correct[top] - p_correct[chosen]:.3f} likelier to be "
                f"right at {saving:.1f}x the cost"
            )
    candidates = tuple(
        Candidate(
            name=n,
            p_correct=float(p_correct[n]),
            expected_cost_usd=float(costs[n]),
            eligible=n not in excluded,
            excluded_because=excluded.get(n),
            within_threshold=n in within,
        )
        for n in names
    )
    return Decision(
        model=chosen,
        policy=policy,
        tolerance=options.tolerance,
        threshold=threshold,
        candidates=candidates,
        reason=reason,
    )


def choose_batch(p_correct: np.ndarray, costs: np.ndarray, tolerance: float) -> np.ndarray:
    """Vectorised cheapest-within-tolerance over many requests: index of the chosen model per row.

    ``p_correct`` is [requests, models]; ``costs`` is [models] or [requests, models].
    """
    costs = np.broadcast_to(costs, p_correct.shape)
    threshold = p_correct.max(axis=1, keepdims=True) - tolerance
    masked = np.where(p_correct >= threshold - 1e-12, costs, np.inf)
    # ties on cost go to the higher P(correct)
    tie_break = masked - 1e-15 * p_correct
    return np.asarray(tie_break.argmin(axis=1))


def budget_tolerance(
    reference_p: np.ndarray, costs: np.ndarray, budget_per_request: float, steps: int = 201
) -> float:
    """The smallest tolerance whose mean cost over reference traffic stays within the budget."""
    for tolerance in np.linspace(0.0, 1.0, steps):
        chosen = choose_batch(reference_p, costs, float(tolerance))
        mean_cost = float(np.broadcast_to(costs, reference_p.shape)[np.arange(len(chosen)), chosen].mean())
        if mean_cost <= budget_per_request:
            return float(tolerance)
    return 1.0
