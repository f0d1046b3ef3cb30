"""`ladder evaluate`: the router beside every baseline a sceptic asks for, on held-out data only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladder.checkpoint import Checkpoint
from ladder.errors import DataError
from ladder.head import OnnxHead
from ladder.policy import choose_batch
from ladder.pool import PoolConfig
from training.costs import cost_matrix
from training.dataset import RoutingData
from training.embed import Progress, embed_texts
from training.metrics import (
    DEFAULT_TOLERANCES,
    OperatingPoint,
    auc,
    cost_to_match,
    expected_calibration_error,
    pgr_summary,
    point,
    shuffled_sweep,
    sweep,
)
from training.neighbours import knn_scores

KNN_NEIGHBOURS = 40


@dataclass(frozen=True)
class EvaluationInputs:
    """Everything scored on the evaluation rows, aligned: questions x models."""

    names: list[str]
    labels: np.ndarray
    costs: np.ndarray
    router_p: np.ndarray
    knn_p: np.ndarray | None
    questions: int
    dropped_incomplete: int
    overlap_with_training: int | None


def _points(points: list[OperatingPoint]) -> list[dict[str, float]]:
    return [p.to_dict() for p in points]


def distribution(chosen: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for j, name in enumerate(names):
        picked = chosen == j
        rows.append(
            {
                "model": name,
                "share": float(picked.mean()),
                "accuracy_when_chosen": float(labels[picked, j].mean()) if picked.any() else None,
            }
        )
    return rows


def build_report(
    inputs: EvaluationInputs,
    recommended_tolerance: float | None,
    strong: str | None = None,
    weak: str | None = None,
    tolerances: tuple[float, ...] = DEFAULT_TOLERANCES,
) -> dict[str, Any]:
    """The evaluation report as a JSON-ready dict."""
    names, y, c, p = inputs.names, inputs.labels, inputs.costs, inputs.router_p
    per_model = {}
    for j, name in enumerate(names):
        area = auc(p[:, j], y[:, j])
        per_model[name] = {
            "accuracy": float(y[:, j].mean()),
            "auc": area,
            "ece": expected_calibration_error(p[:, j], y[:, j]),
            "cost_per_1k": float(c[:, j].mean() * 1000),
        }
    accuracy, cost = y.mean(axis=0), c.mean(axis=0) * 1000
    best_index = max(range(len(names)), key=lambda j: (accuracy[j], -cost[j]))
    best, best_acc, best_cost = names[best_index], float(accuracy[best_index]), float(cost[best_index])
    oracle_acc = float(y.max(axis=1).mean())
    right = np.where(y >= 0.5, c, np.inf)
    oracle_cost = np.where(np.isfinite(right.min(axis=1)), right.min(axis=1), c.min(axis=1))
    router = sweep(p, y, c, tolerances)
    at_zero = router[0]
    headroom = oracle_acc - best_acc
    baselines: dict[str, list[dict[str, float]]] = {"random": _points(shuffled_sweep(p, y, c, tolerances))}
    knn_points = None
    if inputs.knn_p is not None:
        knn_points = sweep(inputs.knn_p, y, c, tolerances)
        baselines["knn"] = _points(knn_points)
    report: dict[str, Any] = {
        "questions": inputs.questions,
        "dropped_incomplete": inputs.dropped_incomplete,
        "dropped_seen_in_training": inputs.overlap_with_training,
        "per_model": per_model,
        "oracle_accuracy": oracle_acc,
        "oracle_cost_per_1k": float(oracle_cost.mean() * 1000),
        "best_single_model": best,
        "best_single_accuracy": best_acc,
        "best_single_cost_per_1k": best_cost,
        "router": _points(router),
        "headroom_captured": (at_zero.accuracy - best_acc) / headroom if headroom > 0 else None,
        "cost_to_match_best_single": cost_to_match(router, best_acc, best_cost),
        "baselines": baselines,
        "baseline_cost_to_match_best_single": {
            "knn": cost_to_match(knn_points, best_acc, best_cost) if knn_points else None,
        },
    }
    if recommended_tolerance is not None:
        chosen = choose_batch(p, c, recommended_tolerance)
        rec = point(recommended_tolerance, chosen, y, c)
        report["recommended"] = {**rec.to_dict(), "distribution": distribution(chosen, y, names)}
    report["distribution_at_tolerance_0"] = distribution(choose_batch(p, c, 0.0), y, names)
    if strong and weak:
        for name in (strong, weak):
            if name not in names:
                raise DataError(f"--strong/--weak: {name!r} is not one of the evaluated models {names}")
        s, w = names.index(strong), names.index(weak)
        pair: dict[str, Any] = {"strong": strong, "weak": weak}
        pair["router"] = pgr_summary(p[:, s] - p[:, w], y[:, s], y[:, w])
        if inputs.knn_p is not None:
            pair["knn"] = pgr_summary(inputs.knn_p[:, s] - inputs.knn_p[:, w], y[:, s], y[:, w])
        report["strong_weak"] = pair
    report["verdict"] = verdict(report)
    return report


def verdict(report: dict[str, Any]) -> list[str]:
    """Plain sentences on where the router stands against its baselines (noise band: 1 point)."""
    lines = []
    router = report["router"]
    best = report["best_single_accuracy"]
    top = max(pt["accuracy"] for pt in router)
    lines.append(
        f"router at tolerance 0: accuracy {router[0]['accuracy']:.3f} vs best single model "
        f"{report['best_single_model']} {best:.3f} (oracle {report['oracle_accuracy']:.3f})"
    )
    if report["cost_to_match_best_single"] is None:
        lines.append(f"the router never matches the best single model's accuracy (its best is {top:.3f})")
    else:
        lines.append(
            "the router matches the best single model at "
            f"{report['cost_to_match_best_single']:.0%} of its cost"
        )
    for name, points in report["baselines"].items():
        beaten = sum(
            any(
                b["cost_per_1k"] <= ours["cost_per_1k"] * 1.02 and b["accuracy"] > ours["accuracy"] + 0.01
                for b in points
            )
            for ours in router
        )
        if beaten:
            lines.append(
                f"NOT above baseline {name}: at {beaten} of {len(router)} operating points it is over "
                f"1 point more accurate at no more cost"
            )
        else:
            lines.append(f"at or above baseline {name} at every operating point (within 1 point)")
    return lines


def evaluation_inputs(
    checkpoint: Checkpoint,
    data: RoutingData,
    pool: PoolConfig | None,
    train_data: RoutingData | None,
    progress: Progress | None = None,
) -> EvaluationInputs:
    """Score the evaluation rows with the checkpoint (and a kNN over the training rows)."""
    if pool is not None:
        checkpoint.require_models([m.checkpoint_label for m in pool.models])
        names, labels_used = list(pool.names), [m.checkpoint_label for m in pool.models]
    else:
        names, labels_used = list(checkpoint.models), list(checkpoint.models)
    missing = [label for label in labels_used if label not in data.models]
    if missing:
        raise DataError(f"the evaluation data has no labels for {missing}")
    y_all = data.labels[:, [data.models.index(label) for label in labels_used]]
    complete = ~np.isnan(y_all).any(axis=1)
    overlap = None
    if train_data is not None:
        seen = set(train_data.questions)
        in_training = np.array([q in seen for q in data.questions], dtype=bool)
        overlap = int((in_training & complete).sum())
        complete &= ~in_training
    if not complete.any():
        raise DataError("no question in the evaluation data has labels for every evaluated model")
    rows = np.nonzero(complete)[0]
    data = data.subset(rows)
    y = y_all[complete]
    costs = cost_matrix(data, names, pool, labels_used)
    enc = checkpoint.manifest.encoder
    max_tokens = int(checkpoint.manifest.training.settings.get("max_tokens", 512))
    x = embed_texts(data.questions, enc.name, enc.variant, max_tokens, progress)
    head = OnnxHead(checkpoint.head_path)
    columns = [checkpoint.models.index(label) for label in labels_used]
    router_p = head.predict(x)[:, columns]
    knn_p = None
    if train_data is not None:
        train_y = train_data.labels[:, [train_data.models.index(label) for label in labels_used]]
        train_x = embed_texts(train_data.questions, enc.name, enc.variant, max_tokens, progress)
        knn_p = knn_scores(train_x, train_y, x)
    return EvaluationInputs(
        names=names,
        labels=y,
        costs=costs,
        router_p=router_p,
        knn_p=knn_p,
        questions=len(rows),
        dropped_incomplete=int(np.isnan(y_all).any(axis=1).sum()),
        overlap_with_training=overlap,
    )


def write_json(report: dict[str, Any], path: Path) -> None:
    import json
    import os

    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(
        json.dumps(report, indent=2, allow_nan=False, default=_json_default) + "\n", encoding="utf-8"
    )
    os.replace(partial, path)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
