"""What "the best operating point" means: the user's objective, applied to a curve of training points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ladder.core.errors import DataError

OBJECTIVES = ("match-best", "arena", "max-accuracy-under-cost")
DEFAULT_OBJECTIVE = "match-best"
MATCH_MARGIN = 0.005


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


def choose_point(points: Sequence[Mapping[str, Any]], objective: Objective, best_accuracy: float) -> int:
    """Index of the point the objective picks (points carry accuracy, cost_per_1k and arena_score)."""
    if not points:
        raise DataError("no operating points to choose from")
    indices = range(len(points))
    if objective.name == "arena":
        return max(indices, key=lambda i: (points[i]["arena_score"], -points[i]["cost_per_1k"]))
    if objective.name == "max-accuracy-under-cost":
        cap = objective.cost_cap if objective.cost_cap is not None else float("inf")
        within = [i for i in indices if points[i]["cost_per_1k"] <= cap]
        if within:
            return max(within, key=lambda i: (points[i]["accuracy"], -points[i]["cost_per_1k"]))
        return min(indices, key=lambda i: points[i]["cost_per_1k"])
    good = [i for i in indices if points[i]["accuracy"] >= best_accuracy - objective.margin]
    if good:
        return min(good, key=lambda i: (points[i]["cost_per_1k"], -points[i]["accuracy"]))
    return max(indices, key=lambda i: (points[i]["accuracy"], -points[i]["cost_per_1k"]))
