"""The routing decision: a pure function of P(correct), expected costs and request options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

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

    def choice(self) -> ChoiceOptions:
        """The policy and its parameter, as `choose` takes them."""
        return ChoiceOptions(self.policy, self.tolerance, self.cost_weight)


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


@dataclass(frozen=True)
class ChoiceOptions:
    """The policy and its one parameter, as `choose` applies them to every request of a batch.

    ``cheapest`` at tolerance 0 is ``argmax`` (the likeliest model, the cheapest among equally likely ones).
    """

    policy: PolicyName = PolicyName.CHEAPEST
    tolerance: float = 0.05
    cost_weight: float = 0.01

    def __post_init__(self) -> None:
        if self.policy is PolicyName.CHEAPEST and self.tolerance == 0:
            object.__setattr__(self, "policy", PolicyName.ARGMAX)

    @property
    def bar_tolerance(self) -> float:
        """How far below the likeliest eligible model's P(correct) a model may fall and still be chosen."""
        return 0.0 if self.policy is PolicyName.ARGMAX else self.tolerance


Scores = npt.NDArray[np.floating]
Mask = npt.NDArray[np.bool_]
Indices = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Choices:
    """What `choose` made of each request ([requests] or [requests, models] arrays)."""

    model: Indices
    """The chosen model's column, per request."""
    threshold: npt.NDArray[np.floating]
    """The P(correct) a model had to reach (the likeliest eligible one's, less the tolerance); NaN under
    ``utility``, which has no bar."""
    within: Mask
    """The eligible models that reached the threshold (under ``utility``: the chosen model alone)."""


TIE_BREAK = "the cheaper model, then the likelier one, then the one listed first"
"""How every choice here settles a tie on the policy's own measure."""


def _first_by(allowed: Mask, *keys: npt.NDArray[np.floating]) -> Indices:
    """Per row, the allowed column that is smallest on ``keys`` (the first key first); ties after every key
    go to the lower column (``lexsort`` is stable)."""
    primary = np.where(allowed, keys[0], np.inf)
    order = np.lexsort((*reversed(keys[1:]), primary), axis=1)
    return np.asarray(order[:, 0], dtype=np.intp)


def _as_rows(
    scores: npt.ArrayLike, prices: npt.ArrayLike, eligible: npt.ArrayLike | None
) -> tuple[Scores, Scores, Mask]:
    p = np.atleast_2d(np.asarray(scores))
    c = np.asarray(prices)
    if c.shape != p.shape:
        c = np.broadcast_to(c, p.shape)
    allowed = np.ones(p.shape, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if allowed.shape != p.shape:
        allowed = np.broadcast_to(allowed, p.shape)
    some = allowed.any(axis=1)
    if not some.all():
        rows = np.flatnonzero(~some).tolist()
        raise NoEligibleModelError(f"no model qualifies for request row(s) {rows[:10]}")
    return p, c, allowed


def choose(
    scores: npt.ArrayLike,
    prices: npt.ArrayLike,
    options: ChoiceOptions,
    eligible: npt.ArrayLike | None = None,
) -> Choices:
    """The routing policy over a batch: per request, the model ``options`` picks among the eligible ones.

    ``scores`` is P(correct), [requests, models] (one request is a one-row call); ``prices`` the expected
    cost in USD, [models] or [requests, models]; ``eligible`` a mask of the same shapes (None: all models).
    ``cheapest``: the cheapest model whose P(correct) is within ``tolerance`` of the likeliest eligible one;
    ``argmax``: the likeliest; ``utility``: the highest P(correct) - ``cost_weight`` x cost per 1K requests.
    A tie on the policy's measure goes to the cheaper model, then the likelier one, then the one listed
    first (`TIE_BREAK`). Comparisons run in the scores' own dtype.
    """
    p, c, allowed = _as_rows(scores, prices, eligible)
    rows = np.arange(p.shape[0])
    if options.policy is PolicyName.UTILITY:
        value = p - options.cost_weight * c * 1000
        model = _first_by(allowed, -value, c, -p)
        within = np.zeros(p.shape, dtype=bool)
        within[rows, model] = True
        return Choices(model, np.full(p.shape[0], np.nan), within)
    threshold = np.where(allowed, p, -np.inf).max(axis=1) - options.bar_tolerance
    within = allowed & (p >= threshold[:, None] - 1e-12)
    return Choices(_first_by(within, c, -p), threshold, within)


def likeliest(scores: npt.ArrayLike, prices: npt.ArrayLike, eligible: npt.ArrayLike | None = None) -> Indices:
    """Per request, the eligible model with the highest P(correct) (ties as `choose` settles them)."""
    p, c, allowed = _as_rows(scores, prices, eligible)
    return _first_by(allowed, -p, c)


def _exclusions(names: Sequence[str], options: DecisionOptions) -> dict[str, str]:
    known = set(names)
    asked = set(options.allowed or ()) | ({options.pinned} if options.pinned else set())
    unknown = sorted(asked - known)
    if unknown:
        raise UnknownModelError(f"unknown model(s) {', '.join(map(repr, unknown))}; the pool has {sorted(known)}")
    excluded = dict(options.excluded)
    for name in names:
        if options.allowed is not None and name not in options.allowed:
            excluded.setdefault(name, "not in the request's allowed models")
        if options.pinned is not None and name != options.pinned:
            excluded.setdefault(name, f"request pinned {options.pinned}")
    return excluded


def decide(p_correct: Mapping[str, float], costs: Mapping[str, float], options: DecisionOptions) -> Decision:
    """Pick a model. ``p_correct`` and ``costs`` (USD per request) are keyed by pool model name; the choice
    is a one-row `choose` over the models the request leaves eligible."""
    names = list(p_correct)
    excluded = _exclusions(names, options)
    eligible = np.array([[n not in excluded for n in names]])
    if not eligible.any():
        reasons = "; ".join(f"{n}: {excluded[n]}" for n in names)
        raise NoEligibleModelError(f"no model qualifies for this request ({reasons})")
    scores = np.array([[p_correct[n] for n in names]], dtype=np.float64)
    prices = np.array([[costs[n] for n in names]], dtype=np.float64)
    rule = options.choice()
    choices = choose(scores, prices, rule, eligible)
    chosen = names[int(choices.model[0])]
    within = {n for n, w in zip(names, choices.within[0].tolist(), strict=True) if w}
    threshold: float | None = None
    count = int(eligible.sum())
    if options.pinned is not None:
        within = {chosen}
        reason = f"pinned by the request to {chosen}"
    elif rule.policy is PolicyName.UTILITY:
        utility = p_correct[chosen] - options.cost_weight * costs[chosen] * 1000
        reason = (
            f"highest utility P - {options.cost_weight:g} x cost per 1K requests"
            f" ({utility:.4f}) among {count} eligible models"
        )
    else:
        tolerance = rule.bar_tolerance
        threshold = float(choices.threshold[0])
        best = float(scores[eligible].max())
        top = names[int(likeliest(scores, prices, eligible)[0])]
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
        policy=rule.policy,
        tolerance=options.tolerance,
        threshold=threshold,
        candidates=candidates,
        reason=reason,
    )


def budget_tolerance(reference_p: np.ndarray, costs: np.ndarray, budget_per_request: float, steps: int = 201) -> float:
    """The smallest tolerance whose mean cost over reference traffic stays within the budget."""
    prices = np.broadcast_to(costs, reference_p.shape)
    rows = np.arange(len(reference_p))
    for tolerance in np.linspace(0.0, 1.0, steps):
        chosen = choose(reference_p, prices, ChoiceOptions(tolerance=float(tolerance))).model
        if float(prices[rows, chosen].mean()) <= budget_per_request:
            return float(tolerance)
    return 1.0
