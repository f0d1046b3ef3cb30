"""`ladder evaluate`'s report: every policy's curve, the objective's pick on training rows, the per-task
baseline, the point at one tolerance and cascades, on scores whose meaning is known."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ladder.training.evaluate import EvaluationInputs, TrainingSide, build_report
from ladder.training.objectives import Objective
from tests.support import ladder

NAMES = ["cheap", "mid", "top"]


def rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None], np.ndarray]:
    """Two tasks: the cheap model is as good as the top one on task a, poor on task b. The scores know the
    task; the answers say when the cheap model is right (it agrees with the mid model)."""
    rng = np.random.default_rng(seed)
    tasks: list[str | None] = ["a" if i % 2 else "b" for i in range(n)]
    is_a = np.array([t == "a" for t in tasks])
    truth = np.stack([np.where(is_a, 0.8, 0.3), np.full(n, 0.55), np.full(n, 0.82)], axis=1)
    labels = (rng.random((n, 3)) < truth).astype(np.float64)
    answers = np.empty((n, 3), dtype=object)
    for j in range(3):
        answers[:, j] = ["B" if y else str(rng.choice(list("ACDEFG"))) for y in labels[:, j]]
    p = np.clip(truth + 0.05 * rng.normal(size=truth.shape), 0.01, 0.99).astype(np.float32)
    return labels, p, answers, tasks, rng.normal(size=(n, 8)).astype(np.float32)


def costs(n: int) -> np.ndarray:
    return np.tile([0.0001, 0.0003, 0.002], (n, 1))


def inputs(n_train: int = 800, n_test: int = 800) -> EvaluationInputs:
    y, p, answers, tasks, x = rows(n_test, 1)
    ty, tp, ta, tt, tx = rows(n_train, 2)
    return EvaluationInputs(
        names=NAMES,
        labels=y,
        costs=costs(n_test),
        router_p=p,
        knn_p=None,
        questions=n_test,
        dropped_incomplete=0,
        overlap_with_training=0,
        tasks=tasks,
        answers=answers,
        logprobs=None,
        embeddings=x,
        training=TrainingSide(ty, costs(n_train), tp, tt, ta, None, tx),
    )


def test_the_report_carries_every_policy_the_objectives_pick_and_the_per_task_baseline() -> None:
    report = build_report(inputs(), None, objective=Objective("match-best"), at_tolerance=0.1)
    assert set(report["policies"]) == {"cheapest", "utility"}
    assert report["policies"]["cheapest"][0]["tolerance"] == 0.0
    assert report["policies"]["utility"][0]["cost_weight"] == 0.0
    rec = report["recommended_by_objective"]
    assert rec["objective"]["name"] == "match-best" and rec["policy"] in ("cheapest", "utility")
    # task a goes to the cheap model: matching the top model costs about half of it, on held-out rows too
    assert rec["held_out"]["accuracy"] >= report["best_single_accuracy"] - 0.03
    assert rec["held_out_cost_share_of_best_single"] < 0.75
    per_task = report["baselines"]["per_task"]
    assert report["baseline_cost_to_match_best_single"]["per_task"] is not None
    assert min(p["cost_per_1k"] for p in per_task) < 0.2 < max(p["cost_per_1k"] for p in per_task)
    at = report["at_tolerance"]
    assert at["tolerance"] == 0.1 and {d["model"] for d in at["distribution"]} == set(NAMES)
    assert any("objective match-best" in line for line in report["verdict"])


def test_arena_objective_prefers_a_cheaper_point_than_match_best() -> None:
    data = replace(inputs(), answers=None)  # no cascades: only the operating points
    match = build_report(data, None, objective=Objective("match-best"))["recommended_by_objective"]
    arena = build_report(data, None, objective=Objective("arena"))["recommended_by_objective"]
    assert arena["cv_cost_per_1k"] <= match["cv_cost_per_1k"]
    capped = build_report(data, None, objective=Objective("max-accuracy-under-cost", cost_cap=0.5))
    assert capped["recommended_by_objective"]["cv_cost_per_1k"] <= 0.5


def test_answers_in_the_data_add_cascades_costed_per_stage() -> None:
    report = build_report(inputs(), None)
    assert "cascade" in report and "cascade_with_router" in report
    plan = report["cascades"]["cascade"]["plan"]
    assert plan["top"] == "top" and plan["chosen_on_training"]["cost_per_1k"] > 0
    for pt in report["cascade"]:
        assert {"threshold", "accuracy", "cost_per_1k", "arena_score", "escalated"} <= set(pt)
        assert pt["cost_per_1k"] >= 0.1 - 1e-9  # the first answer is always paid for
    assert any(line.startswith("cascade (") for line in report["verdict"])
    low, high = plan["held_out_cost_to_match_interval"]  # how far one held-out split can be trusted
    assert low is not None and (high is None or low <= high)
    assert len(report["cost_to_match_best_single_interval"]) == 2
    assert any("90% bootstrap interval" in line for line in report["verdict"])
    served = report["cascades"]["cascade_served"]["plan"]  # a plan the gateway runs exactly as costed
    assert report["cascade_served"] and served["gateway"]["first"] == "cheapest"
    served_line = next(line for line in report["verdict"] if line.startswith("best cascade the gateway"))
    assert "pool file routing.cascade: {" in served_line


def test_max_accuracy_under_cost_without_a_cap_is_one_clear_line(tmp_path: Path) -> None:
    result = ladder(
        "evaluate",
        "--checkpoint",
        str(tmp_path),
        "--data",
        str(tmp_path / "d.csv"),
        "--objective",
        "max-accuracy-under-cost",
    )
    assert result.returncode == 2
    assert "needs --cost-cap" in result.stderr and "Traceback" not in result.stderr
