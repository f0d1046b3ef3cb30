"""Evaluation metrics against hand-computed values."""

import math

import numpy as np
import pytest

from ladder.training.metrics import (
    expected_calibration_error,
    pgr_summary,
    shuffled_sweep,
    sweep,
    sweep_outcomes,
)
from ladder.training.objectives import (
    Objective,
    OperatingPoint,
    arena_score,
    choose_point,
    cost_to_match,
    cost_to_match_interval,
)


def test_arena_score_matches_the_definition() -> None:
    c = (math.log2(200) - math.log2(1.0)) / (math.log2(200) - math.log2(0.0044))
    expected = 1.1 * 0.7 * c / (0.1 * 0.7 + c)
    assert arena_score(0.7, 1.0) == pytest.approx(expected)
    assert arena_score(0.7, 0.0001) == arena_score(0.7, 0.0044)  # clamped
    assert arena_score(0.7, 1000) == 0.0


def test_ece_is_zero_when_calibrated_and_large_when_not() -> None:
    p = np.full(1000, 0.3)
    y = np.r_[np.ones(300), np.zeros(700)]
    assert expected_calibration_error(p, y) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(1000, 0.9), y) == pytest.approx(0.6)


def test_sweep_and_random_baseline() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 2)) < [0.5, 0.8]).astype(float)
    costs = np.tile([1e-4, 1e-3], (400, 1))
    perfect = labels + 0.01 * np.array([1, 0])  # an oracle-like scorer
    points = sweep(perfect, labels, costs, (0.0, 0.5))
    assert points[0].accuracy == pytest.approx(labels.max(axis=1).mean())
    shuffled = shuffled_sweep(perfect, labels, costs, (0.0,))
    assert shuffled[0].cost_per_1k == pytest.approx(points[0].cost_per_1k)
    assert shuffled[0].accuracy < points[0].accuracy - 0.05
    assert cost_to_match(points, 0.8, 1.0) is not None
    assert points[choose_point(points, Objective("match-best"), 0.8)].accuracy >= 0.795


def test_pgr_for_a_perfect_and_a_useless_router() -> None:
    rng = np.random.default_rng(0)
    weak = (rng.random(2000) < 0.4).astype(float)
    strong = np.maximum(weak, (rng.random(2000) < 0.5).astype(float))
    perfect = pgr_summary(strong - weak, strong, weak)
    useless = pgr_summary(rng.random(2000), strong, weak)
    assert perfect["apgr"] > 0.8 and perfect["cpt50"] < 0.2
    assert useless["apgr"] == pytest.approx(0.5, abs=0.05)


def test_cost_to_match_interval_brackets_the_figure_and_widens_with_noise() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    best = (rng.random(n) < 0.7).astype(float)
    best_cost = np.full(n, 1.0)
    # point 0: a cheap model far below the best; point 1: half the cost, right exactly where the best is
    # right on 95% of questions (a clear miss); point 2: the best model itself at full cost
    cheap = (rng.random(n) < 0.4).astype(float)
    half = np.where(rng.random(n) < 0.95, best, 1 - best)
    correct = np.stack([cheap, half, best])
    cost = np.stack([np.full(n, 0.05), np.full(n, 0.5), best_cost])
    low, high = cost_to_match_interval(correct, cost, best, best_cost, draws=100)
    assert low == high == pytest.approx(1.0)  # only the best model itself matches it, in every resample

    tied = np.stack([cheap, best.copy(), best])  # point 1 is as good as the best at half its cost
    low, high = cost_to_match_interval(tied, cost, best, best_cost, draws=100)
    assert low == high == pytest.approx(0.5)

    noisy = np.stack([cheap, np.where(rng.random(n) < 0.5, best, (rng.random(n) < 0.7).astype(float)), best])
    low, high = cost_to_match_interval(noisy, cost, best, best_cost, draws=200)
    assert low == pytest.approx(0.5) and high == pytest.approx(1.0)  # sometimes it matches, sometimes not

    never = np.stack([cheap, cheap])
    assert cost_to_match_interval(never, cost[:2], best, best_cost, draws=50) == [None, None]


def test_sweep_outcomes_are_the_sweep_question_by_question() -> None:
    rng = np.random.default_rng(1)
    p = rng.random((300, 3)).astype(np.float32)
    labels = (rng.random((300, 3)) < p).astype(float)
    costs = np.tile([0.001, 0.004, 0.02], (300, 1))
    correct, cost = sweep_outcomes(p, labels, costs)
    points = sweep(p, labels, costs)
    assert correct.shape == cost.shape == (len(points), 300)
    assert correct.mean(axis=1) == pytest.approx([pt.accuracy for pt in points])
    assert cost.mean(axis=1) * 1000 == pytest.approx([pt.cost_per_1k for pt in points])


def test_a_point_writes_its_setting_then_its_figures() -> None:
    router = OperatingPoint.measured(0.7, 1.0, tolerance=0.05)
    assert list(router.to_dict()) == ["tolerance", "accuracy", "cost_per_1k", "arena_score"]
    assert router.arena_score == arena_score(0.7, 1.0)
    cascade = OperatingPoint.measured(
        0.71234567, 2.0, threshold=-np.inf, escalated=0.25, unsure_below=np.inf, second_opinions=0.1
    ).rounded()
    assert cascade.to_dict() == {
        "threshold": -1e9,  # below every keep score
        "accuracy": 0.712346,
        "cost_per_1k": 2.0,
        "arena_score": round(arena_score(0.71234567, 2.0), 6),
        "escalated": 0.25,
        "unsure_below": None,  # above every keep score
        "second_opinions": 0.1,
    }
    assert list(cascade.to_dict())[-3:] == ["escalated", "unsure_below", "second_opinions"]


def test_an_objective_with_no_point_under_its_cap_takes_the_cheapest() -> None:
    points = [OperatingPoint.measured(0.9, 3.0), OperatingPoint.measured(0.6, 2.0)]
    capped = Objective("max-accuracy-under-cost", cost_cap=1.0)
    assert choose_point(points, capped, 0.9) == 1
    # across plans the same rank: the cheaper plan outranks the more accurate one over the cap
    assert capped.rank(points[1], 0.9) > capped.rank(points[0], 0.9)
    assert choose_point(points, Objective("match-best"), 0.9) == 0
