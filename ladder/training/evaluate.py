"""`ladder evaluate`: the router beside every baseline a sceptic asks for, on held-out data only."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ladder.core.atomic import partial_file
from ladder.core.checkpoint import Checkpoint
from ladder.core.errors import DataError
from ladder.core.head import OnnxHead
from ladder.core.policy import ChoiceOptions, choose
from ladder.core.pool import PoolConfig
from ladder.training.cascade import evaluate_cascades
from ladder.training.cascade_plans import CascadeSide
from ladder.training.costs import training_costs
from ladder.training.dataset import RoutingData
from ladder.training.embed import Progress, embed_texts
from ladder.training.metrics import (
    DEFAULT_TOLERANCES,
    auc,
    expected_calibration_error,
    pgr_summary,
    point,
    shuffled_sweep,
    sweep,
    sweep_outcomes,
)
from ladder.training.neighbours import knn_scores
from ladder.training.objectives import Objective, OperatingPoint, cost_to_match, cost_to_match_interval
from ladder.training.oof import out_of_fold_p
from ladder.training.operating_points import (
    POLICIES,
    curve,
    evaluate_choice,
    options,
    parameters,
    per_task_curve,
    recommend_across_policies,
)

KNN_NEIGHBOURS = 40
MIN_TUNING_QUESTIONS = 50  # training questions every model answered, to tune operating points and cascades
SMALL_SAMPLE = 100  # held-out questions under which the report warns that its figures are noisy


@dataclass(frozen=True)
class TrainingSide:
    """The training rows every model answered, with out-of-fold router scores: where choices are tuned."""

    labels: np.ndarray
    costs: np.ndarray
    oof_p: np.ndarray
    tasks: list[str | None]
    answers: np.ndarray | None
    logprobs: np.ndarray | None
    embeddings: np.ndarray


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
    tasks: list[str | None] | None = None
    answers: np.ndarray | None = None
    logprobs: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    training: TrainingSide | None = None
    left_out: dict[str, str] = field(default_factory=dict)  # report section -> why it is not in the report


def _points(points: list[OperatingPoint]) -> list[dict[str, float | None]]:
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
    objective: Objective | None = None,
    at_tolerance: float | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> dict[str, Any]:
    """The evaluation report as a JSON-ready dict.

    With training rows (``inputs.training``): the (policy, parameter) that ``objective`` picks on their
    out-of-fold scores, the per-task baseline when both sides have tasks, and cascades when both sides
    carry answers. ``at_tolerance`` adds that operating point of the cheapest-within-tolerance policy.
    """
    objective = objective or Objective()
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
    baselines: dict[str, list[dict[str, float | None]]] = {"random": _points(shuffled_sweep(p, y, c, tolerances))}
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
        "cost_to_match_best_single_interval": cost_to_match_interval(
            *sweep_outcomes(p, y, c, tolerances), y[:, best_index], c[:, best_index]
        ),
        "baselines": baselines,
        "baseline_cost_to_match_best_single": {
            "knn": cost_to_match(knn_points, best_acc, best_cost) if knn_points else None,
        },
    }
    if recommended_tolerance is not None:
        chosen = choose(p, c, ChoiceOptions(tolerance=recommended_tolerance)).model
        rec = point(recommended_tolerance, chosen, y, c)
        report["recommended"] = {**rec.to_dict(), "distribution": distribution(chosen, y, names)}
    report["distribution_at_tolerance_0"] = distribution(choose(p, c, ChoiceOptions(tolerance=0.0)).model, y, names)
    report["policies"] = {policy: _points(curve(policy, p, y, c, parameters(policy, c))) for policy in POLICIES}
    if at_tolerance is not None:
        report["at_tolerance"] = at_tolerance_point(inputs, at_tolerance)
    left_out = dict(inputs.left_out)
    train = inputs.training
    if train is not None:
        chosen_rec = recommend_across_policies(train.oof_p, train.labels, train.costs, objective)
        picked = choose(p, c, options(chosen_rec["policy"], chosen_rec["value"])).model
        held_out = evaluate_choice(picked, y, c, names)
        report["recommended_by_objective"] = {
            **chosen_rec,
            "held_out": held_out,
            "held_out_cost_share_of_best_single": held_out["cost_per_1k"] / best_cost if best_cost else None,
        }
        if inputs.tasks is None or not any(t is not None for t in train.tasks):
            side = "evaluation" if inputs.tasks is None else "training"
            left_out["baselines.per_task"] = f"the {side} data has no `task` column"
        else:
            per_task = per_task_curve(train.tasks, train.labels, train.costs, inputs.tasks, y, c)
            baselines["per_task"] = _points(per_task)
            report["baseline_cost_to_match_best_single"]["per_task"] = cost_to_match(per_task, best_acc, best_cost)
        if inputs.answers is None or train.answers is None or inputs.embeddings is None:
            side = "evaluation" if inputs.answers is None else "training"
            left_out["cascades"] = f"the {side} data has no `answer` column (the models' answer texts)"
        else:
            report["cascades"] = evaluate_cascades(
                names,
                CascadeSide(
                    train.labels, train.costs, train.answers, train.logprobs, train.oof_p, train.embeddings
                ),
                CascadeSide(y, c, inputs.answers, inputs.logprobs, p, inputs.embeddings),
                objective,
                embed,
            )
            for key in ("cascade", "cascade_with_router", "cascade_served"):
                if key in report["cascades"]:
                    report[key] = report["cascades"][key]["points"]
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
    report["left_out"] = left_out
    report["verdict"] = verdict(report)
    return report


def at_tolerance_point(inputs: EvaluationInputs, tolerance: float) -> dict[str, Any]:
    """The cheapest-within-tolerance policy at one tolerance: accuracy, cost, arena score, distribution."""
    chosen = choose(inputs.router_p, inputs.costs, ChoiceOptions(tolerance=tolerance)).model
    return {
        **point(tolerance, chosen, inputs.labels, inputs.costs).to_dict(),
        "distribution": distribution(chosen, inputs.labels, inputs.names),
    }


def verdict(report: dict[str, Any]) -> list[str]:
    """Plain sentences on where the router stands against its baselines (noise band: 1 point)."""
    lines = []
    if report["questions"] < SMALL_SAMPLE:
        lines.append(
            f"warning: only {report['questions']} held-out questions: one question moves an accuracy by "
            f"{100 / report['questions']:.1f} points, so differences of a few points mean little here"
        )
    router = report["router"]
    best = report["best_single_accuracy"]
    top = max(pt["accuracy"] for pt in router)
    lines.append(
        f"router at tolerance 0: accuracy {router[0]['accuracy']:.3f} vs best single model "
        f"{report['best_single_model']} {best:.3f} (oracle {report['oracle_accuracy']:.3f})"
    )
    spread = _interval_text(report.get("cost_to_match_best_single_interval"))
    if report["cost_to_match_best_single"] is None:
        lines.append(
            f"the router never matches the best single model's accuracy (its best is {top:.3f}){spread}"
        )
    else:
        lines.append(
            "the router matches the best single model at "
            f"{report['cost_to_match_best_single']:.0%} of its cost{spread}"
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
    rec = report.get("recommended_by_objective")
    if rec is not None:
        lines.append(
            f"objective {rec['objective']['name']}: chosen on training rows {rec['policy']} "
            f"{rec['parameter']}={rec['value']:.4g}; held out: accuracy {rec['held_out']['accuracy']:.3f} "
            f"at {rec['held_out_cost_share_of_best_single']:.0%} of the best single model's cost"
        )
    cascade_labels = (
        ("cascade", "cascade"),
        ("cascade_with_router", "router + cascade"),
        ("cascade_served", "best cascade the gateway serves as costed"),
    )
    for key, label in cascade_labels:
        found = report.get("cascades", {}).get(key)
        if found is None:
            continue
        plan = found["plan"]
        share = plan["held_out_cost_to_match_best_single"]
        held = plan["held_out"]
        lines.append(
            f"{label} ({plan['first']} -> {plan['top']}, {plan['rule']}): "
            + (
                f"matches the best single model at {share:.0%} of its cost"
                if share
                else "never matches the best single model"
            )
            + _interval_text(plan.get("held_out_cost_to_match_interval"))
            + f"; at the point chosen on training rows: accuracy {held['accuracy']:.3f} at "
            f"${held['cost_per_1k']:.4g}/1K"
            + (f"; pool file routing.cascade: {json.dumps(plan['gateway'])}" if "gateway" in plan else "")
        )
    by_reason: dict[str, list[str]] = {}
    for section, why in report.get("left_out", {}).items():
        by_reason.setdefault(why, []).append(section)
    lines += [f"left out: {', '.join(sections)}: {why}" for why, sections in by_reason.items()]
    return lines


def _interval_text(interval: list[float | None] | None) -> str:
    """`` (90% bootstrap interval 60%–never)`` for a cost-to-match interval; empty without one."""
    if not interval:
        return ""
    low, high = (f"{v:.0%}" if v is not None else "never" for v in interval)
    return f" (90% bootstrap interval {low}–{high})"


def evaluation_inputs(
    checkpoint: Checkpoint,
    data: RoutingData,
    pool: PoolConfig | None,
    train_data: RoutingData | None,
    progress: Progress | None = None,
    tune_on_training: bool = False,
) -> EvaluationInputs:
    """Score the evaluation rows with the checkpoint (and a kNN over the training rows).

    With ``tune_on_training`` (and training rows), the checkpoint's out-of-fold scores on its training
    rows are rebuilt (`ladder.training.oof`) so that operating points and cascades can be tuned there.
    """
    if pool is not None:
        checkpoint.require_models([m.checkpoint_label for m in pool.models])
        names, labels_used = list(pool.names), [m.checkpoint_label for m in pool.models]
    else:
        names, labels_used = list(checkpoint.models), list(checkpoint.models)
    missing = [label for label in labels_used if label not in data.models]
    if missing:
        raise DataError(f"the evaluation data has no labels for {missing}")
    columns_used = [data.models.index(label) for label in labels_used]
    y_all = data.labels[:, columns_used]
    complete = ~np.isnan(y_all).any(axis=1)
    overlap = None
    if train_data is not None:
        seen = set(train_data.questions)
        in_training = np.array([q in seen for q in data.questions], dtype=bool)
        overlap = int((in_training & complete).sum())
        complete &= ~in_training
    if not complete.any():
        if overlap:
            raise DataError(
                f"every evaluation question with labels for every model ({overlap}) is also in the checkpoint's "
                "training data, so none is held out: label with a test split (`ladder judge --test-fraction "
                "0.2` or `ladder import --test-fraction 0.2`) and train again, or pass held-out --data"
            )
        raise DataError("no question in the evaluation data has labels for every evaluated model")
    rows = np.nonzero(complete)[0]
    data = data.subset(rows)
    y = y_all[complete]
    costs, _ = training_costs(data, names, pool, labels_used)
    enc = checkpoint.manifest.encoder
    max_tokens = int(checkpoint.manifest.training.settings.get("max_tokens", 512))
    x = embed_texts(data.questions, enc.name, enc.variant, max_tokens, progress)
    head = OnnxHead(checkpoint.head_path)
    columns = [checkpoint.models.index(label) for label in labels_used]
    router_p = head.predict(x)[:, columns]
    knn_p = None
    training = None
    left_out: dict[str, str] = {}
    tuned = ("recommended_by_objective", "baselines.per_task", "cascades")
    lacking = [] if train_data is None else [label for label in labels_used if label not in train_data.models]
    if train_data is None:
        for section in ("baselines.knn", *tuned):
            left_out[section] = "the training data was not found (pass --train-data)"
    elif lacking:
        for section in ("baselines.knn", *tuned):
            left_out[section] = (
                f"the training data has no labels for {lacking} (an onboarded model?); pass --train-data "
                "with rows for every model"
            )
    else:
        train_y = train_data.labels[:, [train_data.models.index(label) for label in labels_used]]
        train_x = embed_texts(train_data.questions, enc.name, enc.variant, max_tokens, progress)
        knn_p = knn_scores(train_x, train_y, x)
        if not tune_on_training:
            for section in tuned:
                left_out[section] = "not tuned on training rows (--no-tune)"
        else:
            training, why = _training_side(checkpoint, train_data, train_x, pool, names, labels_used, progress)
            if training is None:
                for section in tuned:
                    left_out[section] = why
    return EvaluationInputs(
        names=names,
        labels=y,
        costs=costs,
        router_p=router_p,
        knn_p=knn_p,
        questions=len(rows),
        dropped_incomplete=int(np.isnan(y_all).any(axis=1).sum()),
        overlap_with_training=overlap,
        tasks=list(data.tasks) if any(t is not None for t in data.tasks) else None,
        answers=None if data.answers is None else data.answers[:, columns_used],
        logprobs=None if data.answer_logprobs is None else data.answer_logprobs[:, columns_used],
        embeddings=x,
        training=training,
        left_out=left_out,
    )


def _training_side(
    checkpoint: Checkpoint,
    train_data: RoutingData,
    train_x: np.ndarray,
    pool: PoolConfig | None,
    names: list[str],
    labels_used: list[str],
    progress: Progress | None,
) -> tuple[TrainingSide | None, str]:
    """The checkpoint's training rows (as `ladder train` selected them) with out-of-fold router scores.

    None, with the reason, when they cannot be rebuilt or are too few to tune on (checked before the refit).
    """
    lacking = [label for label in checkpoint.models if label not in train_data.models]
    if lacking:
        return None, f"the training data has no labels for the checkpoint's models {lacking}"
    ckpt_y = train_data.labels[:, [train_data.models.index(label) for label in checkpoint.models]]
    keep = ~np.isnan(ckpt_y).all(axis=1)
    kept = train_data.subset(np.nonzero(keep)[0])
    used = [train_data.models.index(label) for label in labels_used]
    y = kept.labels[:, used]
    complete = ~np.isnan(y).any(axis=1)
    if complete.sum() < MIN_TUNING_QUESTIONS:
        return None, (
            f"only {int(complete.sum())} training questions have labels for every model; tuning on training "
            f"rows needs at least {MIN_TUNING_QUESTIONS}"
        )
    ids = [train_data.question_ids[i] for i in np.nonzero(keep)[0]]
    oof = out_of_fold_p(checkpoint, train_x[keep], ckpt_y[keep], progress, question_ids=ids)
    rows = np.nonzero(complete)[0]
    side = kept.subset(rows)
    return (
        TrainingSide(
            labels=y[complete],
            costs=training_costs(side, names, pool, labels_used)[0],
            oof_p=oof[complete][:, [checkpoint.models.index(label) for label in labels_used]],
            tasks=list(side.tasks),
            answers=None if side.answers is None else side.answers[:, used],
            logprobs=None if side.answer_logprobs is None else side.answer_logprobs[:, used],
            embeddings=train_x[keep][complete],
        ),
        "",
    )


def write_json(report: dict[str, Any], path: Path) -> None:
    import json

    with partial_file(path) as partial:
        partial.write_text(
            json.dumps(report, indent=2, allow_nan=False, default=_json_default) + "\n", encoding="utf-8"
        )


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
