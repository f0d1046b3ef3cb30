"""Operating points across policies: curves per policy, the per-task baseline, the point at one tolerance,
and the (policy, parameter) an objective picks on training rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ladder.core.policy import ChoiceOptions, PolicyName, choose
from ladder.training.metrics import DEFAULT_TOLERANCES
from ladder.training.objectives import Objective, OperatingPoint, choose_point

POLICIES = ("cheapest", "utility")
PARAMETER = {"cheapest": "tolerance", "utility": "cost_weight"}
RELATIVE_WEIGHTS = tuple(float(w) for w in np.concatenate([[0.0], np.geomspace(0.002, 20.0, 40)]))
"""Utility cost weights as multiples of 1 / (the priciest model's mean cost per 1K requests)."""


def cost_weights(costs: np.ndarray) -> list[float]:
    """The utility weights swept for a pool: scaled to its priciest model, so the sweep spans the ladder."""
    top = float(np.broadcast_to(costs, costs.shape).mean(axis=0).max() * 1000)
    return [w / top if top > 0 else w for w in RELATIVE_WEIGHTS]


def options(policy: str, parameter: float) -> ChoiceOptions:
    """`choose`'s options for one policy at one value of its parameter."""
    if policy == "cheapest":
        return ChoiceOptions(tolerance=parameter)
    return ChoiceOptions(PolicyName.UTILITY, cost_weight=parameter)


def parameters(policy: str, costs: np.ndarray) -> list[float]:
    return list(DEFAULT_TOLERANCES) if policy == "cheapest" else cost_weights(costs)


def measure(chosen: np.ndarray, labels: np.ndarray, costs: np.ndarray, **setting: float) -> OperatingPoint:
    """The operating point of one choice per question, at the reports' precision."""
    rows = np.arange(len(chosen))
    accuracy = float(labels[rows, chosen].mean())
    cost = float(costs[rows, chosen].mean() * 1000)
    return OperatingPoint.measured(accuracy, cost, **setting).rounded()


def evaluate_choice(
    chosen: np.ndarray, labels: np.ndarray, costs: np.ndarray, names: Sequence[str]
) -> dict[str, Any]:
    """A choice's accuracy, cost, arena score and share of questions per model."""
    return {
        **measure(chosen, labels, costs).figures(),
        "distribution": {
            name: round(float((chosen == j).mean()), 6) for j, name in enumerate(names) if (chosen == j).any()
        },
    }


def curve(
    policy: str, p: np.ndarray, labels: np.ndarray, costs: np.ndarray, grid: Sequence[float]
) -> list[OperatingPoint]:
    """Accuracy, cost and arena score at each parameter value of one policy."""
    return [
        measure(choose(p, costs, options(policy, value)).model, labels, costs, **{PARAMETER[policy]: value})
        for value in grid
    ]


def recommend_across_policies(
    train_p: np.ndarray,
    train_labels: np.ndarray,
    train_costs: np.ndarray,
    objective: Objective,
) -> dict[str, Any]:
    """The (policy, parameter) the objective picks on the training rows' out-of-fold scores."""
    best = float(train_labels.mean(axis=0).max())
    candidates = []
    for policy in POLICIES:
        grid = parameters(policy, train_costs)
        points = curve(policy, train_p, train_labels, train_costs, grid)
        index = choose_point(points, objective, best)
        candidates.append((policy, grid[index], points[index]))
    chosen_index = choose_point([c[2] for c in candidates], objective, best)
    policy, value, point = candidates[chosen_index]
    return {
        "policy": policy,
        "parameter": PARAMETER[policy],
        "value": value,
        "objective": objective.to_dict(),
        "cv_accuracy": point.accuracy,
        "cv_cost_per_1k": point.cost_per_1k,
        "per_policy_on_training": {c[0]: {"value": c[1], **c[2].to_dict()} for c in candidates},
    }


def per_task_curve(
    train_tasks: Sequence[str | None],
    train_labels: np.ndarray,
    train_costs: np.ndarray,
    tasks: Sequence[str | None],
    labels: np.ndarray,
    costs: np.ndarray,
) -> list[OperatingPoint]:
    """A router told each question's task: per task, the model with the best training accuracy minus a
    cost penalty (tasks unseen in training take the overall choice), swept over the penalty."""
    mean_cost = train_costs.mean(axis=0) * 1000
    task_names = sorted({t for t in train_tasks if t is not None})
    per_task = {
        t: np.nanmean(train_labels[np.array([x == t for x in train_tasks])], axis=0) for t in task_names
    }
    overall = np.nanmean(train_labels, axis=0)
    points = []
    for weight in cost_weights(train_costs):
        picks = {t: int(np.nanargmax(acc - weight * mean_cost)) for t, acc in per_task.items()}
        fallback = int(np.nanargmax(overall - weight * mean_cost))
        chosen = np.array([picks.get(t, fallback) if t is not None else fallback for t in tasks])
        points.append(measure(chosen, labels, costs, cost_weight=weight))
    return points
