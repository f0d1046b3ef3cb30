"""Routing metrics: calibration, ranking, the router's accuracy-cost sweeps, RouteLLM's PGR (operating points
and objectives: `ladder.training.objectives`)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from ladder.core.policy import ChoiceOptions, choose
from ladder.training.objectives import OperatingPoint

DEFAULT_TOLERANCES = tuple(
    float(t)
    for t in np.unique(
        np.round(
            np.concatenate([np.linspace(0, 0.1, 21), np.linspace(0.1, 0.5, 17), [0.6, 0.7, 0.8, 1.0]]), 4
        )
    )
)


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width bins; ``y`` may be graded in [0, 1]."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            total += in_bin.sum() * abs(float(p[in_bin].mean()) - float(y[in_bin].mean()))
    return total / max(len(p), 1)


def auc(p: np.ndarray, y: np.ndarray) -> float | None:
    """ROC AUC of P(correct) against correctness (graded labels thresholded at 0.5); None if one class."""
    binary = (y >= 0.5).astype(int)
    if binary.min() == binary.max():
        return None
    return float(roc_auc_score(binary, p))


def point(tolerance: float, chosen: np.ndarray, labels: np.ndarray, costs: np.ndarray) -> OperatingPoint:
    rows = np.arange(len(chosen))
    accuracy = float(labels[rows, chosen].mean())
    cost = float(costs[rows, chosen].mean() * 1000)
    return OperatingPoint.measured(accuracy, cost, tolerance=tolerance)


def sweep(
    p: np.ndarray, labels: np.ndarray, costs: np.ndarray, tolerances: tuple[float, ...] = DEFAULT_TOLERANCES
) -> list[OperatingPoint]:
    """The router's accuracy-cost curve: cheapest-within-tolerance at each tolerance."""
    return [point(t, choose(p, costs, ChoiceOptions(tolerance=t)).model, labels, costs) for t in tolerances]


def sweep_outcomes(
    p: np.ndarray, labels: np.ndarray, costs: np.ndarray, tolerances: tuple[float, ...] = DEFAULT_TOLERANCES
) -> tuple[np.ndarray, np.ndarray]:
    """Per question, whether `sweep`'s choice at each tolerance is right and what it costs: [tolerances,
    questions] each (for `cost_to_match_interval`)."""
    rows = np.arange(len(labels))
    chosen = np.stack([choose(p, costs, ChoiceOptions(tolerance=t)).model for t in tolerances])
    return labels[rows, chosen], costs[rows, chosen]


def shuffled_sweep(
    p: np.ndarray,
    labels: np.ndarray,
    costs: np.ndarray,
    tolerances: tuple[float, ...] = DEFAULT_TOLERANCES,
    repeats: int = 20,
    seed: int = 0,
) -> list[OperatingPoint]:
    """Random routing at each cost level: the router's own mix of models, dealt to questions at random."""
    rng = np.random.default_rng(seed)
    points = []
    for t in tolerances:
        chosen = choose(p, costs, ChoiceOptions(tolerance=t)).model
        runs = [point(t, rng.permutation(chosen), labels, costs) for _ in range(repeats)]
        accuracy = float(np.mean([r.accuracy for r in runs]))
        cost = float(np.mean([r.cost_per_1k for r in runs]))
        points.append(OperatingPoint.measured(accuracy, cost, tolerance=t))
    return points


def strong_weak_curve(
    score: np.ndarray, strong: np.ndarray, weak: np.ndarray, steps: int = 101
) -> tuple[np.ndarray, np.ndarray]:
    """Share of calls to the strong model vs accuracy, sending the top-scored questions to it."""
    order = np.argsort(-score, kind="stable")
    shares = np.linspace(0, 1, steps)
    accuracies = []
    for share in shares:
        to_strong = np.zeros(len(score), dtype=bool)
        to_strong[order[: round(share * len(score))]] = True
        accuracies.append(float(np.where(to_strong, strong, weak).mean()))
    return shares, np.asarray(accuracies)


def pgr_summary(score: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> dict[str, float | None]:
    """RouteLLM's protocol: PGR curve, its average (APGR) and the strong-call share for 50%/80% PGR."""
    shares, accuracies = strong_weak_curve(score, strong, weak)
    weak_acc, strong_acc = float(weak.mean()), float(strong.mean())
    gap = strong_acc - weak_acc
    if gap <= 0:
        return {
            "strong_accuracy": strong_acc,
            "weak_accuracy": weak_acc,
            "apgr": None,
            "cpt50": None,
            "cpt80": None,
        }
    pgr = (accuracies - weak_acc) / gap
    apgr = float(np.trapezoid(pgr, shares))

    def cpt(target: float) -> float | None:
        hits = np.nonzero(pgr >= target)[0]
        return float(shares[hits[0]]) if len(hits) else None

    return {
        "strong_accuracy": strong_acc,
        "weak_accuracy": weak_acc,
        "apgr": apgr,
        "cpt50": cpt(0.5),
        "cpt80": cpt(0.8),
        "random_apgr": 0.5,
    }
