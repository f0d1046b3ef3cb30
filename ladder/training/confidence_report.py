"""The confidence-cascade report: every plan tuned on training rows, measured on held-out rows beside 405B.

Plans: each single model; the prefill router alone; Ladder's router and calibrated cascade learned together
(calibrated per set of answers in hand, with their agreement, returning the most likely right answer); the
previous method (a first-order chain that returns the last answer); Zellinger & Thomson's method (a
Markov-copula model of each chain's calibrated confidences, thresholds by continuous optimisation:
`ladder.training.copula_cascade`); and fixed chains with grid-searched thresholds on raw confidence.
Each plan's settings on the training-row frontier make its curve; the user's objective picks one of them
on training rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ladder.core.confidence_plan import CalibratedPlan
from ladder.core.rung import RungSettings
from ladder.training import copula_cascade
from ladder.training.confidence import CalibrationSettings, Side, fit_confidence
from ladder.training.confidence_plans import (
    Outcomes,
    StateSettings,
    chain_grid,
    expected_costs,
    expected_task_costs,
    frontier,
    play,
    play_chains,
    play_states,
    rung_grid,
    state_grid,
)
from ladder.training.confidence_states import READS, States, fit_states
from ladder.training.dataset import RoutingData
from ladder.training.objectives import BOOTSTRAP_DRAWS, cost_to_match_interval
from ladder.training.served_plan import fit_served_plan, play_plan, recorded_inputs

HALF = 0.5
CASCADE = "Ladder: router + calibrated cascade"
AUTHORS = "Zellinger & Thomson: Markov-copula chains, continuous tuning"
MATCH_MARGIN = 0.005
Player = Callable[[RoutingData, list[int]], Outcomes]


@dataclass(frozen=True)
class PlanRun:
    """One plan: its training-frontier outcomes on both sides (the same settings, in the same order)."""

    name: str
    train: Outcomes
    test: Outcomes
    settings: list[str]
    grid: list[Any] = field(default_factory=list)  # the setting objects, where the plan can be served


def _run(
    name: str,
    play_train: Outcomes,
    replay: Callable[[list[int]], Outcomes],
    describe: Callable[[int], str],
    grid: Sequence[Any] = (),
) -> PlanRun:
    kept = frontier(play_train)
    objects = [grid[k] for k in kept] if grid else []
    return PlanRun(name, play_train.take(kept), replay(kept), [describe(k) for k in kept], objects)


def _rung_plan(
    name: str, train: RoutingData, test: RoutingData, sides: tuple[Side, Side], stages: tuple[int, ...]
) -> PlanRun:
    grid = rung_grid(stages)
    costs = (expected_costs(train, train), expected_costs(train, test))
    outcomes = play(train, sides[0], costs[0], grid)
    return _run(
        name,
        outcomes,
        lambda kept: play(test, sides[1], costs[1], [grid[k] for k in kept]),
        lambda k: f"cost_weight={grid[k].cost_weight:.4g} margin={grid[k].margin:g} max_stages={grid[k].max_stages}",
        grid,
    )


def _state_plan(name: str, train: RoutingData, test: RoutingData, states: tuple[States, States]) -> PlanRun:
    grid = state_grid()
    costs = (expected_task_costs(train, train), expected_task_costs(train, test))
    return _run(
        name,
        play_states(train, states[0], costs[0], grid),
        lambda kept: play_states(test, states[1], costs[1], [grid[k] for k in kept]),
        lambda k: (
            f"cost_weight={grid[k].rung.cost_weight:.4g} margin={grid[k].rung.margin:g} "
            f"max_stages={grid[k].rung.max_stages} reads={READS[grid[k].reads]}"
        ),
        grid,
    )


def _chain_plan(train: RoutingData, test: RoutingData) -> PlanRun:
    chains = chain_grid(train)
    names = train.models
    return _run(
        "grid-searched chain (raw confidence)",
        play_chains(train, chains),
        lambda kept: play_chains(test, [chains[k] for k in kept]),
        lambda k: " > ".join(
            f"{names[m]}" + (f" (keep at >= {t:.4g})" if i < len(chains[k].thresholds) else "")
            for i, (m, t) in enumerate(zip(chains[k].models, [*chains[k].thresholds, 0.0], strict=True))
        ),
    )


def _copula_plan(train: RoutingData, test: RoutingData) -> tuple[PlanRun, dict[str, Any]]:
    """The authors' method (`ladder.training.copula_cascade`), and their comparison with grid search."""
    fitted = copula_cascade.fit(train, {t or "" for t in test.tasks})
    settings = copula_cascade.tune(fitted)
    run = _run(
        AUTHORS,
        copula_cascade.play(train, fitted, settings),
        lambda kept: copula_cascade.play(test, fitted, [settings[k] for k in kept]),
        lambda k: settings[k].describe(train.models),
        settings,
    )
    return run, copula_cascade.auc_against_grid(train, test, fitted, settings)


def _single(data: RoutingData, m: int) -> Outcomes:
    n = len(data)
    latency = np.zeros(n) if data.latencies_ms is None else data.latencies_ms[:, m]
    return Outcomes(data.labels[None, :, m], data.costs[None, :, m], latency[None], np.ones((1, n)))


def _point(o: Outcomes, k: int, base_cost: float, rows: np.ndarray | None = None) -> dict[str, Any]:
    correct, cost, latency = (a[k] if rows is None else a[k][rows] for a in o.arrays()[:3])
    return {
        "accuracy": round(float(correct.mean()), 4),
        "cost_per_1k": round(float(cost.mean() * 1000), 5),
        "cost_share": round(float(cost.mean() / base_cost), 4),
        "latency_p50_ms": round(float(np.percentile(latency, 50)), 1),
        "latency_p95_ms": round(float(np.percentile(latency, 95)), 1),
    }


def _match_share(o: Outcomes, accuracy: float, base_cost: float) -> float | None:
    acc, cost = o.correct.mean(axis=1), o.cost.mean(axis=1)
    reach = acc >= accuracy - 1e-9
    return round(float(cost[reach].min() / base_cost), 4) if reach.any() else None


def _best_under(o: Outcomes, cap: float) -> int | None:
    acc, cost = o.correct.mean(axis=1), o.cost.mean(axis=1)
    within = np.flatnonzero(cost <= cap + 1e-15)
    return int(within[np.argmax(acc[within])]) if within.size else None


def _cheapest_reaching(o: Outcomes, target: float) -> int:
    acc, cost = o.correct.mean(axis=1), o.cost.mean(axis=1)
    reach = np.flatnonzero(acc >= target - MATCH_MARGIN)
    return int(reach[np.argmin(cost[reach])]) if reach.size else int(np.argmax(acc))


@dataclass(frozen=True)
class Reference:
    """The best single model on each side: its per-question correctness and cost."""

    model: str
    train_correct: np.ndarray
    train_cost: np.ndarray
    test_correct: np.ndarray
    test_cost: np.ndarray


def _summarise(run: PlanRun, ref: Reference, rows: np.ndarray | None = None) -> dict[str, Any]:
    """A plan on held-out rows (all, or one task's): curve, cost to match the reference, accuracy at half
    its cost (chosen on training rows, and read off the held-out curve), and the objective's point."""
    test = run.test if rows is None else run.test.take(range(len(run.settings)), rows)
    correct, cost = (
        ref.test_correct if rows is None else ref.test_correct[rows],
        ref.test_cost if rows is None else ref.test_cost[rows],
    )
    base, target = float(cost.mean()), float(correct.mean())
    chosen_match = _cheapest_reaching(run.train, float(ref.train_correct.mean()))
    chosen_half = _best_under(run.train, HALF * float(ref.train_cost.mean()))
    read_half = _best_under(test, HALF * base)
    low, high = cost_to_match_interval(test.correct, test.cost, correct, cost, draws=BOOTSTRAP_DRAWS)
    return {
        "curve": [_point(test, k, base) for k in range(len(run.settings))],
        "cost_to_match": _match_share(test, target, base),
        "cost_to_match_interval": [low, high],
        "chosen_on_training_to_match": {"setting": run.settings[chosen_match], **_point(test, chosen_match, base)},
        "chosen_on_training_at_half_cost": None
        if chosen_half is None
        else {"setting": run.settings[chosen_half], **_point(test, chosen_half, base)},
        "held_out_curve_at_half_cost": None if read_half is None else _point(test, read_half, base),
    }


def _paired_gain(a: np.ndarray, b: np.ndarray, seed: int = 0) -> list[float]:
    """5th and 95th percentiles of mean(a - b) over bootstrap resamples of the questions."""
    rng = np.random.default_rng(seed)
    diff = a.astype(np.float64) - b.astype(np.float64)
    draws = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(BOOTSTRAP_DRAWS)]
    low, high = np.percentile(draws, [5, 95])
    return [round(float(low), 4), round(float(high), 4)]


def _recommend(cascade: PlanRun, router: PlanRun, ref: Reference) -> dict[str, Any]:
    """The plan to serve, chosen on training rows: the cascade only where, at the cost of the router's
    objective point, it is more accurate beyond the bootstrap interval; then checked on held-out rows."""
    r = _cheapest_reaching(router.train, float(ref.train_correct.mean()))
    c = _best_under(cascade.train, float(router.train.cost[r].mean()))
    train_gain = [-1.0, -1.0] if c is None else _paired_gain(cascade.train.correct[c], router.train.correct[r])
    pick_cascade = c is not None and train_gain[0] > 0
    held_out = None
    if c is not None:
        held_out = {
            "router": {"setting": router.settings[r], **_point(router.test, r, float(ref.test_cost.mean()))},
            "cascade": {"setting": cascade.settings[c], **_point(cascade.test, c, float(ref.test_cost.mean()))},
            "accuracy_gain_interval": _paired_gain(cascade.test.correct[c], router.test.correct[r]),
        }
    verdict = (
        "the calibrated cascade: more accurate than the prefill router at the router's cost on training rows, "
        "beyond the bootstrap interval"
        if pick_cascade
        else "the prefill router alone: the cascade does not pay beyond the bootstrap interval on training rows"
    )
    return {
        "recommended": cascade.name if pick_cascade else router.name,
        "recommended_setting": cascade.settings[c] if pick_cascade and c is not None else router.settings[r],
        "why": verdict,
        "training_accuracy_gain_interval": train_gain,
        "held_out": held_out,
    }


def evaluate_confidence(data: RoutingData, prompts: np.ndarray) -> dict[str, Any]:
    """The whole report (see the module); ``prompts`` are the prompt embeddings in ``data``'s row order."""
    return evaluate_confidence_plan(data, prompts)[0]


def evaluate_confidence_plan(data: RoutingData, prompts: np.ndarray) -> tuple[dict[str, Any], CalibratedPlan]:
    """`evaluate_confidence`'s report, and the recommended plan in the form the gateway serves (its
    held-out figures are the report's ``served_plan``)."""
    is_train = np.array([s == "train" for s in data.splits])
    train, test = data.subset(is_train), data.subset(~is_train)
    embeddings = (prompts[is_train], prompts[~is_train])
    best = int(test.labels.mean(axis=0).argmax())
    ref = Reference(
        data.models[best], train.labels[:, best], train.costs[:, best], test.labels[:, best], test.costs[:, best]
    )
    full = fit_confidence(train, test, embeddings)
    states = fit_states(train, test, full, embeddings)
    authors = fit_confidence(train, test, embeddings, CalibrationSettings(prompt=False, router=False))
    authors_run, against_grid = _copula_plan(train, test)
    runs = [
        *(PlanRun(m, _single(train, j), _single(test, j), [m]) for j, m in enumerate(data.models)),
        _rung_plan("prefill router", train, test, full, (1,)),
        _state_plan(CASCADE, train, test, states),
        _rung_plan("first-order chain, last answer (previous method)", train, test, full, (2, 3, 5)),
        authors_run,
        _chain_plan(train, test),
    ]
    tasks = sorted({t for t in test.tasks if t})
    task_rows = {t: np.flatnonzero(np.array(test.tasks) == t) for t in tasks}
    plans = {}
    for run in runs:
        summary = _summarise(run, ref)
        summary["per_task"] = {t: _per_task(run, ref, rows) for t, rows in task_rows.items()}
        plans[run.name] = summary
    by_name = {r.name: r for r in runs}
    recommendation = _recommend(by_name[CASCADE], by_name["prefill router"], ref)
    served, plan = _served(train, test, full, by_name[recommendation["recommended"]], recommendation, ref)
    report = {
        "data": {"train_questions": len(train), "test_questions": len(test), "models": data.models, "tasks": tasks},
        "reference": {
            "model": ref.model,
            "accuracy": round(float(ref.test_correct.mean()), 4),
            "cost_per_1k": round(float(ref.test_cost.mean() * 1000), 5),
        },
        "goals": {"match_at_most_share": 0.70, "accuracy_at_half_cost_at_least": 0.825},
        "calibration": _calibration(test, full[1], authors[1]),
        "plans": plans,
        "recommendation": recommendation,
        "served_plan": served,
        "authors_tuning_against_grid_search": against_grid,
    }
    return report, plan


def _served(
    train: RoutingData,
    test: RoutingData,
    full: tuple[Side, Side],
    run: PlanRun,
    recommendation: dict[str, Any],
    ref: Reference,
) -> tuple[dict[str, Any], CalibratedPlan]:
    """The recommended setting as a servable plan (`ladder.training.served_plan`) and its held-out figures
    when played as the gateway runs it."""
    setting = run.grid[run.settings.index(recommendation["recommended_setting"])]
    if isinstance(setting, RungSettings):  # the prefill router: one stage, nothing read
        setting = StateSettings(setting, READS.index("none"))
    plan = fit_served_plan(train, full[0].prefill, setting)
    played = play_plan(plan, full[1].prefill, *recorded_inputs(test))
    rows = np.arange(len(test))
    base = float(ref.test_cost.mean())
    summary = {
        "setting": recommendation["recommended_setting"],
        "held_out": {
            "accuracy": round(float(test.labels[rows, played.returned].mean()), 4),
            "cost_share": round(float(played.cost.mean() / base), 4),
            "mean_models_asked": round(float((played.order >= 0).sum(axis=1).mean()), 3),
            "self_checks_per_question": round(float(played.checked.sum(axis=1).mean()), 3),
        },
        "reads": "the router's P(correct) per model; each answer's confidence (its own logprob where it picks "
        "an option letter, else a self-check's P(yes) where the plan pays one); the answers' agreement",
        "not_served": "the task label (unknown to the gateway) and the prompt features (the router's "
        "P(correct) stands in for them)",
    }
    return summary, plan


def _per_task(run: PlanRun, ref: Reference, rows: np.ndarray) -> dict[str, Any]:
    summary = _summarise(run, ref, rows)
    summary.pop("curve")
    return summary


def _calibration(test: RoutingData, full: Side, authors: Side) -> dict[str, Any]:
    """Held-out AUC and Brier score of each model's calibrated confidence, pooled over tasks."""
    from ladder.training.metrics import auc

    out: dict[str, Any] = {}
    for name, side in (("prompt+router+confidence", full), ("confidence only", authors), ("prefill", full)):
        p = side.prefill if name == "prefill" else side.calibrated
        out[name] = {
            m: {
                "auc": round(auc(p[:, j], test.labels[:, j]) or float("nan"), 4),
                "brier": round(float(((p[:, j] - test.labels[:, j]) ** 2).mean()), 4),
            }
            for j, m in enumerate(test.models)
        }
    return out
