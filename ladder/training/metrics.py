"""Routing metrics: calibration, ranking, accuracy-cost sweeps, RouterArena's score, RouteLLM's PGR."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from ladder.core.policy import ChoiceOptions, choose

ARENA_BETA = 0.1
ARENA_COST_MIN = 0.0044
ARENA_COST_MAX = 200.0
DEFAULT_TOLERANCES = tuple(
    float(t)
    for t in np.unique(
        np.round(
            np.concatenate([np.linspace(0, 0.1, 21), np.linspace(0.1, 0.5, 17), [0.6, 0.7, 0.8, 1.0]]), 4
        )
    )
)


def arena_score(accuracy: float, cost_per_1k: float) -> float:
    """RouterArena's Acc-Cost Arena score S = (1+b)AC / (bA + C), b = 0.1, C from log-clamped cost."""
    c = min(max(cost_per_1k, ARENA_COST_MIN), ARENA_COST_MAX)
    cost_score = (math.log2(ARENA_COST_MAX) - math.log2(c)) / (
        math.log2(ARENA_COST_MAX) - math.log2(ARENA_COST_MIN)
    )
    denominator = ARENA_BETA * accuracy + cost_score
    return 0.0 if denominator == 0 else (1 + ARENA_BETA) * accuracy * cost_score / denominator


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


@dataclass(frozen=True)
class OperatingPoint:
    tolerance: float
    accuracy: float
    cost_per_1k: float
    arena_score: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def point(tolerance: float, chosen: np.ndarray, labels: np.ndarray, costs: np.ndarray) -> OperatingPoint:
    rows = np.arange(len(chosen))
    accuracy = float(labels[rows, chosen].mean())
    cost = float(costs[rows, chosen].mean() * 1000)
    return OperatingPoint(tolerance, accuracy, cost, arena_score(accuracy, cost))


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
        points.append(OperatingPoint(t, accuracy, cost, arena_score(accuracy, cost)))
    return points


def cost_to_match(points: list[OperatingPoint], accuracy: float, cost: float) -> float | None:
    """Lowest cost at which a curve reaches ``accuracy``, as a fraction of ``cost``; None if never."""
    reaching = [pt.cost_per_1k for pt in points if pt.accuracy >= accuracy - 1e-12]
    return min(reaching) / cost if reaching and cost > 0 else None


BOOTSTRAP_DRAWS = 200


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


def recommend(points: list[OperatingPoint], target_accuracy: float, margin: float = 0.005) -> OperatingPoint:
    """The cheapest point within ``margin`` of ``target_accuracy``; else the most accurate point."""
    good = [pt for pt in points if pt.accuracy >= target_accuracy - margin]
    if good:
        return min(good, key=lambda pt: (pt.cost_per_1k, -pt.accuracy))
    return max(points, key=lambda pt: (pt.accuracy, -pt.cost_per_1k))


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
