"""Cascades on data with answers and tasks, with a prefill estimate that needs no encoder: per-task accuracy.

    .venv/bin/python research/cascade_by_task.py runs/mmlu_pro.csv.gz ladder/defaults/pool.yaml OUT.json

The prefill P(correct) of a model on a question is its accuracy on the question's task over training rows
(out-of-fold on the training rows themselves, 5 folds by question), i.e. a router that is told the task.
Everything is tuned on the `train` split and reported on the `test` split, as `ladder evaluate` does; this
script exists because embedding 12,000 prompts takes far longer on a small CPU than the cascade itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ladder.core.policy import choose
from ladder.core.pool import load_pool
from ladder.training.cascade import evaluate_cascades
from ladder.training.cascade_plans import CascadeSide
from ladder.training.costs import cost_matrix
from ladder.training.dataset import RoutingData, read_canonical
from ladder.training.metrics import DEFAULT_TOLERANCES
from ladder.training.objectives import Objective
from ladder.training.operating_points import (
    cost_weights,
    curve,
    evaluate_choice,
    options,
    per_task_curve,
    recommend_across_policies,
)
from ladder.training.plot import plot_report

FOLDS = 5


def task_accuracy(train_tasks: list[str | None], train_y: np.ndarray, tasks: list[str | None]) -> np.ndarray:
    overall = train_y.mean(axis=0)
    table = {t: train_y[np.array([x == t for x in train_tasks])].mean(axis=0) for t in set(train_tasks) if t}
    return np.stack([table.get(t, overall) if t else overall for t in tasks]).astype(np.float32)


def side(
    data: RoutingData, labels: list[str], names: list[str], pool_path: str
) -> tuple[RoutingData, np.ndarray, np.ndarray, np.ndarray]:
    cols = [data.models.index(label) for label in labels]
    y = data.labels[:, cols]
    keep = ~np.isnan(y).any(axis=1)
    sub = data.subset(np.nonzero(keep)[0])
    assert sub.answers is not None
    return sub, y[keep], cost_matrix(sub, names, load_pool(pool_path), labels), sub.answers[:, cols]


def main(data_path: str, pool_path: str, out: str) -> None:
    pool = load_pool(pool_path)
    names, labels = list(pool.names), [m.checkpoint_label for m in pool.models]
    data = read_canonical([data_path])
    train, ty, tc, ta = side(data.split("train"), labels, names, pool_path)
    test, y, c, a = side(data.split("test"), labels, names, pool_path)
    seen = set(train.questions)
    fresh = np.array([q not in seen for q in test.questions])
    test, y, c, a = test.subset(np.nonzero(fresh)[0]), y[fresh], c[fresh], a[fresh]
    folds = np.random.default_rng(0).permutation(np.arange(len(ty)) % FOLDS)
    train_p = np.zeros_like(ty, dtype=np.float32)
    for k in range(FOLDS):
        held = folds == k
        rest = [t for t, h in zip(train.tasks, held, strict=True) if not h]
        train_p[held] = task_accuracy(
            rest, ty[~held], [t for t, h in zip(train.tasks, held, strict=True) if h]
        )
    test_p = task_accuracy(train.tasks, ty, test.tasks)
    task_names = sorted({t for t in train.tasks if t})

    def onehot(tasks: list[str | None]) -> np.ndarray:
        return np.array([[t == n for n in task_names] for t in tasks], dtype=np.float32)

    objective = Objective()
    cascades = evaluate_cascades(
        names,
        CascadeSide(ty, tc, ta, None, train_p, onehot(train.tasks)),
        CascadeSide(y, c, a, None, test_p, onehot(test.tasks)),
        objective,
    )
    recommended = recommend_across_policies(train_p, ty, tc, objective)
    held = evaluate_choice(choose(test_p, c, options(recommended["policy"], recommended["value"])).model, y, c, names)
    accuracy, cost = y.mean(axis=0), c.mean(axis=0) * 1000
    best = int(max(range(len(names)), key=lambda j: (accuracy[j], -cost[j])))
    report: dict[str, Any] = {
        "questions": len(y),
        "prefill": "per-task accuracy on training rows (out-of-fold there)",
        "per_model": {
            n: {"accuracy": float(accuracy[j]), "cost_per_1k": float(cost[j])} for j, n in enumerate(names)
        },
        "best_single_model": names[best],
        "best_single_accuracy": float(accuracy[best]),
        "best_single_cost_per_1k": float(cost[best]),
        "oracle_accuracy": float(y.max(axis=1).mean()),
        "task_router": {
            "cheapest": [pt.to_dict() for pt in curve("cheapest", test_p, y, c, list(DEFAULT_TOLERANCES))],
            "utility": [pt.to_dict() for pt in curve("utility", test_p, y, c, cost_weights(tc))],
        },
        "task_router_recommended": {**recommended, "held_out": held},
        "per_task_baseline": [pt.to_dict() for pt in per_task_curve(train.tasks, ty, tc, test.tasks, y, c)],
        "cascades": cascades,
    }
    # shaped for ladder.training.plot: the task router stands where the router's curve does
    report["router"] = report["task_router"]["cheapest"]
    report["policies"] = report["task_router"]
    report["baselines"] = {"per_task": report["per_task_baseline"]}
    Path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_report(
        report,
        Path(out).with_suffix(".png"),
        title=f"Held-out MMLU-Pro, {len(y)} questions: a router told the subject, and cascades",
        router_label="router told the subject (per-subject accuracy)",
    )
    print("task router recommended", json.dumps(report["task_router_recommended"]["held_out"]))
    for key in ("cascade", "cascade_with_router"):
        plan = cascades[key]["plan"]
        print(key, json.dumps(plan))


if __name__ == "__main__":
    main(*sys.argv[1:4])
