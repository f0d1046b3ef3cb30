"""Operating points and what "the best one" means: RouterArena's score, the user's objective, cost to match."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ladder.core.errors import DataError

OBJECTIVES = ("match-best", "arena", "max-accuracy-under-cost")
DEFAULT_OBJECTIVE = "match-best"
MATCH_MARGIN = 0.005
ARENA_BETA = 0.1
ARENA_COST_MIN = 0.0044
ARENA_COST_MAX = 200.0
BOOTSTRAP_DRAWS = 200
REPORT_DIGITS = 6


def arena_score(accuracy: float, cost_per_1k: float) -> float:
    """RouterArena's Acc-Cost Arena score S = (1+b)AC / (bA + C), b = 0.1, C from log-clamped cost."""
    c = min(max(cost_per_1k, ARENA_COST_MIN), ARENA_COST_MAX)
    cost_score = (math.log2(ARENA_COST_MAX) - math.log2(c)) / (
        math.log2(ARENA_COST_MAX) - math.log2(ARENA_COST_MIN)
    )
    denominator = ARENA_BETA * accuracy + cost_score
    return 0.0 if denominator == 0 else (1 + ARENA_BETA) * accuracy * cost_score / denominator


def _report_threshold(t: float) -> float | None:
    """A keep-score threshold as reports write it: rounded; an open edge as None (above every score) or
    -1e9 (below every score)."""
    return round(float(t), REPORT_DIGITS) if np.isfinite(t) else (None if t > 0 else -1e9)


@dataclass(frozen=True)
class OperatingPoint:
    """One setting of a routing policy or cascade plan, measured on a set of questions: its accuracy, its
    mean cost per 1K requests and their arena score, the setting that gave it (the policy's tolerance or
    cost weight; a cascade's keep-score thresholds) and, for cascades, the shares of questions that
    escalated and asked a second opinion. Settings a point does not have are None."""

    accuracy: float
    cost_per_1k: float
    arena_score: float
    tolerance: float | None = None
    cost_weight: float | None = None
    threshold: float | None = None  # cascades: the keep score below which the first answer escalates
    escalated: float | None = None
    unsure_below: float | None = None  # unsure cascades: the keep score below which a second opinion is asked
    second_opinions: float | None = None

    @classmethod
    def measured(cls, accuracy: float, cost_per_1k: float, **setting: float | None) -> OperatingPoint:
        """The point with its arena score computed from ``accuracy`` and ``cost_per_1k``."""
        return cls(accuracy, cost_per_1k, arena_score(accuracy, cost_per_1k), **setting)

    def rounded(self) -> OperatingPoint:
        """Accuracy, cost, arena score and shares at the reports' precision (objectives then choose on the
        figures a reader sees)."""

        def r(v: float | None) -> float | None:
            return None if v is None else round(v, REPORT_DIGITS)

        return replace(
            self,
            accuracy=round(self.accuracy, REPORT_DIGITS),
            cost_per_1k=round(self.cost_per_1k, REPORT_DIGITS),
            arena_score=round(self.arena_score, REPORT_DIGITS),
            escalated=r(self.escalated),
            second_opinions=r(self.second_opinions),
        )

    def figures(self) -> dict[str, float]:
        """Accuracy, cost, arena score and the shares the point has, rounded as reports write them."""
        figures = {"accuracy": self.accuracy, "cost_per_1k": self.cost_per_1k, "arena_score": self.arena_score}
        for key in ("escalated", "second_opinions"):
            value = getattr(self, key)
            if value is not None:
                figures[key] = value
        return {k: round(v, REPORT_DIGITS) for k, v in figures.items()}

    def setting(self) -> dict[str, float | None]:
        """The setting that gave the point, as reports write it (cost weights at 8 places: they are small)."""
        out: dict[str, float | None] = {}
        if self.tolerance is not None:
            out["tolerance"] = round(self.tolerance, REPORT_DIGITS)
        if self.cost_weight is not None:
            out["cost_weight"] = round(self.cost_weight, 8)
        if self.threshold is not None:
            out["threshold"] = _report_threshold(self.threshold)
        if self.unsure_below is not None:
            out["unsure_below"] = _report_threshold(self.unsure_below)
        return out

    def to_dict(self) -> dict[str, float | None]:
        """The report's entry: the setting, then the figures (a cascade's unsure band edge after its
        escalation share, as reports have always listed them)."""
        setting, figures = self.setting(), self.figures()
        head = {k: v for k, v in setting.items() if k != "unsure_below"}
        out: dict[str, float | None] = {**head, **{k: v for k, v in figures.items() if k != "second_opinions"}}
        if "unsure_below" in setting:
            out["unsure_below"] = setting["unsure_below"]
        if "second_opinions" in figures:
            out["second_opinions"] = figures["second_opinions"]
        return out


@dataclass(frozen=True)
class Objective:
    """`match-best` (the default): the cheapest point within `margin` of the best single model's accuracy.
    `arena`: the highest RouterArena arena score. `max-accuracy-under-cost`: the most accurate point whose
    cost per 1K requests is at most `cost_cap`."""

    name: str = DEFAULT_OBJECTIVE
    margin: float = MATCH_MARGIN
    cost_cap: float | None = None

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise DataError(f"unknown objective {self.name!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.name == "max-accuracy-under-cost" and self.cost_cap is None:
            raise DataError("objective max-accuracy-under-cost needs --cost-cap (USD per 1K requests)")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "margin": self.margin, "cost_cap_per_1k": self.cost_cap}

    def rank(self, point: OperatingPoint, best_accuracy: float) -> tuple[float, ...]:
        """How the objective ranks a point (higher is better), within one curve and across plans.

        `match-best`: points within the margin of ``best_accuracy`` first, the cheapest of them (then the
        most accurate); else the most accurate (then the cheapest). `arena`: the highest arena score (then
        the cheapest). `max-accuracy-under-cost`: points under the cap first, the most accurate of them
        (then the cheapest); else the cheapest (then the most accurate)."""
        acc, cost = point.accuracy, point.cost_per_1k
        if self.name == "arena":
            return (point.arena_score, -cost)
        if self.name == "max-accuracy-under-cost":
            cap = self.cost_cap if self.cost_cap is not None else math.inf
            return (1.0, acc, -cost) if cost <= cap else (0.0, -cost, acc)
        if acc >= best_accuracy - self.margin:
            return (1.0, -cost, acc)
        return (0.0, acc, -cost)


def choose_point(points: Sequence[OperatingPoint], objective: Objective, best_accuracy: float) -> int:
    """Index of the point the objective picks (the first of equally ranked ones)."""
    if not points:
        raise DataError("no operating points to choose from")
    return max(range(len(points)), key=lambda i: objective.rank(points[i], best_accuracy))


def cost_to_match(points: Sequence[OperatingPoint], accuracy: float, cost: float) -> float | None:
    """Lowest cost at which a curve reaches ``accuracy``, as a fraction of ``cost``; None if never."""
    reaching = [pt.cost_per_1k for pt in points if pt.accuracy >= accuracy - 1e-12]
    return min(reaching) / cost if reaching and cost > 0 else None


def cost_to_match_interval(
    correct: np.ndarray,
    cost: np.ndarray,
    best_correct: np.ndarray,
    best_cost: np.ndarray,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> list[float | None]:
    """The 5th and 95th percentiles of `cost_to_match` over bootstrap resamples of the questions.

    ``correct`` and ``cost`` are per question for each point of a curve ([points, questions]); the best
    single model's are per question. Each resample recomputes the curve, the best model's accuracy and its
    cost on the same questions; a resample where the curve never matches counts as "never" (None).
    """
    rng = np.random.default_rng(seed)
    n = correct.shape[1]
    shares = np.empty(draws)
    for k in range(draws):
        rows = rng.integers(0, n, n)
        accuracy, spent = correct[:, rows].mean(axis=1), cost[:, rows].mean(axis=1)
        reaching = accuracy >= best_correct[rows].mean() - 1e-12
        base = best_cost[rows].mean()
        shares[k] = spent[reaching].min() / base if reaching.any() and base > 0 else np.inf
    low, high = np.percentile(shares, [5, 95], method="inverted_cdf")  # no interpolation toward "never"
    return [float(v) if np.isfinite(v) else None for v in (low, high)]
