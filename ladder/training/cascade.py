"""Offline cascades: a first model answers, an acceptance rule keeps the answer or escalates to the top rung.

Every plan is tuned on the training rows (out-of-fold scores only) and reported on the held-out rows. Each
question pays for every call its plan made: the first answer, a second opinion when the plan asks one (on
every question, or only where its keep score is unsure), and the top model when it escalated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ladder.core.cascade_step import Action, AnswerState, StepRule, step
from ladder.training.answer_scorer import (
    AnswerScorer,
    Embed,
    agreement,
    answer_features,
    is_free_text,
    out_of_fold,
)
from ladder.training.cascade_plans import (
    SERVED_ROUTER_ACCEPT_P,
    CascadeSide,
    Plan,
    answering_models,
    gateway_settings,
    plans,
    research_only,
)
from ladder.training.objectives import (
    Objective,
    OperatingPoint,
    choose_point,
    cost_to_match,
    cost_to_match_interval,
)
from ladder.training.pca import principal_axes

REDUCED_DIMS = 16
BAND_GRID = 41
"""Quantiles of the training keep score tried as each edge of the unsure band (all pairs are tried)."""


def _pick(matrix: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.asarray(matrix[np.arange(len(index)), index])


def _features(
    plan: Plan,
    side: CascadeSide,
    first: np.ndarray,
    second: np.ndarray | None,
    reducer: _Reducer,
    embed: Embed | None,
) -> np.ndarray:
    answers = list(_pick(side.answers, first))
    others = [list(_pick(side.answers, second))] if second is not None else []
    logprob = None if side.logprobs is None else _pick(side.logprobs, first)
    chosen = np.stack([_pick(side.prefill_p, first), side.prefill_p[:, plan.top]], axis=1)
    extra = [chosen, reducer.prompt(side.prompt)]
    if reducer.answers_embedded and embed is not None:
        reduced = reducer.answer_columns(side, embed)  # [questions, models, dims]
        extra.append(reduced[np.arange(len(first)), first])
    return answer_features(
        answers, logprob, others, side.prefill_p, np.hstack(extra), embed if reducer.free_text else None
    ).values


class _Reducer:
    """PCA bases fitted on training rows only: prompt embeddings, and answer embeddings for free text."""

    def __init__(self, train: CascadeSide, embed: Embed | None) -> None:
        self.prompt_mean, self.prompt_basis, _ = principal_axes(train.prompt, REDUCED_DIMS)
        flat = [a for a in train.answers.ravel().tolist() if a]
        self.free_text = is_free_text(flat[:2000])
        self.answers_embedded = self.free_text and embed is not None
        self.answer_mean = self.answer_basis = None
        self._columns: dict[int, np.ndarray] = {}
        if self.answers_embedded and embed is not None:
            sample = flat[:: max(1, len(flat) // 2000)]
            self.answer_mean, self.answer_basis, _ = principal_axes(embed(sample), REDUCED_DIMS)

    def prompt(self, x: np.ndarray) -> np.ndarray:
        return np.asarray((x - self.prompt_mean) @ self.prompt_basis, dtype=np.float32)

    def answer(self, x: np.ndarray) -> np.ndarray:
        assert self.answer_mean is not None and self.answer_basis is not None
        return np.asarray((x - self.answer_mean) @ self.answer_basis, dtype=np.float32)

    def answer_columns(self, side: CascadeSide, embed: Embed) -> np.ndarray:
        """Every model's reduced answer embedding on one side, embedded once per model column."""
        key = id(side.answers)
        if key not in self._columns:
            columns = [
                self.answer(embed([a or "" for a in side.answers[:, j].tolist()]))
                for j in range(side.answers.shape[1])
            ]
            self._columns[key] = np.stack(columns, axis=1)
        return self._columns[key]


def _keep_scores(
    plan: Plan,
    train: CascadeSide,
    test: CascadeSide,
    stages: dict[str, tuple[np.ndarray, np.ndarray | None]],
    reducer: _Reducer,
    embed: Embed | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per question, how strongly to keep the first answer (higher keeps); out-of-fold on training rows."""
    scores = []
    if plan.rule == "unsure" and plan.score == "router":
        for side, (first, _) in ((train, stages["train"]), (test, stages["test"])):
            # the gateway's router gap (``unsure_gap``): P(first) minus the likeliest model's P
            p = side.prefill_p.astype(np.float64)  # thresholds compare as the gateway's Python floats do
            scores.append(_pick(p, first) - p.max(axis=1))
        return scores[0], scores[1]
    if plan.rule == "unsure":  # the learned scorer, read before any second opinion is asked
        unread: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
            k: (f, None) for k, (f, _) in stages.items()
        }
        return _keep_scores(replace(plan, rule="scorer", second=None), train, test, unread, reducer, embed)
    if plan.rule == "agreement":
        for side, (first, second) in ((train, stages["train"]), (test, stages["test"])):
            assert second is not None
            a = list(_pick(side.answers, first))
            b = list(_pick(side.answers, second))
            scores.append(agreement(a, b, embed if reducer.free_text else None))
        return scores[0], scores[1]
    if plan.rule == "confidence":
        for side, (first, _) in ((train, stages["train"]), (test, stages["test"])):
            if side.logprobs is None:
                return None
            lp = _pick(side.logprobs, first)
            scores.append(np.where(np.isnan(lp), -np.inf, lp))
        return scores[0], scores[1]
    (f_train, s_train), (f_test, s_test) = stages["train"], stages["test"]
    x_train = _features(plan, train, f_train, s_train, reducer, embed)
    x_test = _features(plan, test, f_test, s_test, reducer, embed)
    right_first, right_top = _pick(train.labels, f_train), train.labels[:, plan.top]
    # keep when the first answer is likelier right than the top model would be
    keep_train = out_of_fold(x_train, right_first) - out_of_fold(x_train, right_top)
    keep_test = AnswerScorer.fit(x_train, right_first).predict(x_test) - AnswerScorer.fit(
        x_train, right_top
    ).predict(x_test)
    return keep_train, keep_test


@dataclass(frozen=True)
class _Calls:
    """What one plan's calls are on one side, before any threshold: the first and second-opinion models
    per question, whether the second opinion is asked on every question, and whether it agrees."""

    first: np.ndarray
    second: np.ndarray | None
    always_second: bool
    agrees: np.ndarray | None  # rule "unsure": whether the second opinion agrees with the first answer


def _calls(
    plan: Plan, side: CascadeSide, stages: tuple[np.ndarray, np.ndarray | None], embed: Embed | None
) -> _Calls:
    first, second = stages
    if plan.rule != "unsure" or second is None:
        return _Calls(first, second, second is not None, None)
    agrees = agreement(list(_pick(side.answers, first)), list(_pick(side.answers, second)), embed) > 0.5
    return _Calls(first, second, False, agrees)


def _outcomes(
    side: CascadeSide, calls: _Calls, top: int, keep: np.ndarray, settings: Sequence[tuple[float, float]]
) -> dict[str, np.ndarray]:
    """Per (lower, upper) threshold pair and question ([settings, questions] each), the cascade's step
    (`ladder.core.cascade_step.step`, as the gateway takes it with the plan's pool settings): below the lower
    the first answer escalates, from the upper up it is kept; in between (rule "unsure") the second opinion
    is asked and must agree. A first answer from the top model is kept. A second opinion that came from the
    top model is its answer when the question escalates (paid once, as the gateway reuses it)."""
    first, second = calls.first, calls.second
    n = len(first)
    rule = StepRule(
        lower=np.array([lo for lo, _ in settings])[:, None],
        upper=np.array([hi for _, hi in settings])[:, None],
        router_accept_p=SERVED_ROUTER_ACCEPT_P,
    )
    paid_second = np.zeros(n, dtype=bool) if second is None else second != first
    second_cost = np.zeros(n) if second is None else _pick(side.costs, second)
    top_gave_it = np.zeros(n, dtype=bool) if second is None else second == top
    state = AnswerState(
        last=first == top,
        router_p=_pick(side.prefill_p, first).astype(np.float64),
        keep_score=np.asarray(keep, dtype=np.float64),
        mean_logprob=np.full(n, np.nan),
        asked=calls.always_second | ~paid_second,
        agrees=np.full(n, np.nan),
    )
    looked = step(state, rule).action
    asked = np.broadcast_to(paid_second, looked.shape) if calls.always_second else looked == Action.ASK
    if calls.agrees is not None:
        opinion = np.where(paid_second, calls.agrees.astype(np.float64), np.nan)
        after = step(replace(state, asked=np.ones(n, dtype=bool), agrees=opinion), rule).action
        looked = np.where(asked, after, looked)
    escalate = looked == Action.ESCALATE
    cost = (
        _pick(side.costs, first)
        + np.where(asked, second_cost, 0.0)
        + np.where(escalate & ~(asked & top_gave_it), side.costs[:, top], 0.0)
    )
    correct = np.where(escalate, side.labels[:, top], _pick(side.labels, first))
    return {"correct": correct, "cost": cost, "escalated": escalate, "asked": asked}


def _curve(
    side: CascadeSide, calls: _Calls, top: int, keep: np.ndarray, settings: Sequence[tuple[float, float]]
) -> list[OperatingPoint]:
    """One point per (lower, upper) threshold pair (see `_outcomes`), at the reports' precision."""
    outcomes = _outcomes(side, calls, top, keep, settings)
    points = []
    for k, (lower, upper) in enumerate(settings):
        unsure = calls.agrees is not None
        point = OperatingPoint.measured(
            float(outcomes["correct"][k].mean()),
            float(outcomes["cost"][k].mean() * 1000),
            threshold=lower,
            escalated=float(outcomes["escalated"][k].mean()),
            unsure_below=upper if unsure else None,
            second_opinions=float(outcomes["asked"][k].mean()) if unsure else None,
        )
        points.append(point.rounded())
    return points


def _thresholds(keep: np.ndarray, rule: str) -> list[float]:
    if rule == "agreement":
        return [0.5]
    finite = keep[np.isfinite(keep)]
    grid = np.unique(np.quantile(finite, np.linspace(0, 1, 101))) if finite.size else np.zeros(0)
    return [-np.inf, *grid.tolist(), np.inf]


def _settings(plan: Plan, side: CascadeSide, calls: _Calls, keep: np.ndarray) -> list[tuple[float, float]]:
    """The threshold pairs a plan's curve is made of, from training rows only: one threshold for every rule
    but "unsure", whose band edges are every pair on a quantile grid, kept where no cheaper pair on the
    training rows is at least as accurate."""
    if plan.rule != "unsure":
        return [(t, t) for t in _thresholds(keep, plan.rule)]
    finite = keep[np.isfinite(keep)]
    edges = [-np.inf, *np.unique(np.quantile(finite, np.linspace(0, 1, BAND_GRID))).tolist(), np.inf]
    pairs = [(lo, hi) for i, lo in enumerate(edges) for hi in edges[i:]]
    points = _curve(side, calls, plan.top, keep, pairs)
    order = sorted(range(len(pairs)), key=lambda k: (points[k].cost_per_1k, -points[k].accuracy))
    frontier, best = [], -1.0
    for k in order:
        if points[k].accuracy > best:
            frontier.append(pairs[k])
            best = points[k].accuracy
    return frontier


def evaluate_cascades(
    names: Sequence[str],
    train: CascadeSide,
    test: CascadeSide,
    objective: Objective,
    embed: Embed | None = None,
) -> dict[str, Any]:
    """Every plan tuned on training rows; the report's `cascade` curve (the plan the objective picks on
    training rows), the best plan that does and does not use the router, and every plan's summary."""
    reducer = _Reducer(train, embed)
    best_model = int(test.labels.mean(axis=0).argmax())
    best_single = float(test.labels.mean(axis=0)[best_model])
    best_cost = float(test.costs.mean(axis=0)[best_model] * 1000)
    train_best = float(train.labels.mean(axis=0).max())
    summaries: list[dict[str, Any]] = []
    curves: list[list[OperatingPoint]] = []
    held_out: list[tuple[_Calls, int, np.ndarray, list[tuple[float, float]]]] = []
    unread_scores: dict[tuple[int | None, float | None], tuple[np.ndarray, np.ndarray] | None] = {}
    for plan in plans(names, train):
        stages = {
            "train": answering_models(plan, train),
            "test": answering_models(plan, test),
        }
        # the learned scorer read before any second opinion: fitted once per first rung, shared by the
        # plain scorer plan and the unsure plans that read it
        plain_scorer = plan.rule == "scorer" and not plan.verifier
        unread = plain_scorer or (plan.rule == "unsure" and plan.score == "scorer")
        first_rung = (plan.first, plan.router_tolerance)
        if unread and first_rung in unread_scores:
            scored = unread_scores[first_rung]
        else:
            scored = _keep_scores(plan, train, test, stages, reducer, embed)
            if unread:
                unread_scores[first_rung] = scored
        if scored is None:
            continue
        keep_train, keep_test = scored
        free_text_embed = embed if reducer.free_text else None
        train_calls = _calls(plan, train, stages["train"], free_text_embed)
        test_calls = _calls(plan, test, stages["test"], free_text_embed)
        settings = _settings(plan, train, train_calls, keep_train)
        train_points = _curve(train, train_calls, plan.top, keep_train, settings)
        test_points = _curve(test, test_calls, plan.top, keep_test, settings)
        index = choose_point(train_points, objective, train_best)
        summary = {
            **plan.describe(names),
            "chosen_on_training": {**train_points[index].setting(), **train_points[index].figures()},
            "held_out": test_points[index].figures(),
            "held_out_cost_to_match_best_single": cost_to_match(test_points, best_single, best_cost),
            "_rank": objective.rank(train_points[index], train_best),
        }
        served = gateway_settings(plan, names, train, settings[index])
        if served is not None:
            summary["gateway"] = served
        else:
            summary["research_only"] = research_only(plan, train)
        summaries.append(summary)
        curves.append(test_points)
        held_out.append((test_calls, plan.top, keep_test, settings))
    report: dict[str, Any] = {"objective": objective.name, "plans": []}
    groups = (
        ("cascade", lambda s: not s["uses_router"]),
        ("cascade_with_router", lambda s: s["uses_router"]),
        ("cascade_served", lambda s: "gateway" in s),
    )
    for key, belongs in groups:
        group = [k for k, s in enumerate(summaries) if belongs(s)]
        if group:
            best = max(group, key=lambda k: summaries[k]["_rank"])
            outcomes = _outcomes(test, *held_out[best])
            interval = cost_to_match_interval(
                outcomes["correct"], outcomes["cost"], test.labels[:, best_model], test.costs[:, best_model]
            )
            public = {**_public(summaries[best]), "held_out_cost_to_match_interval": interval}
            report[key] = {"plan": public, "points": [pt.to_dict() for pt in curves[best]]}
    report["plans"] = [_public(s) for s in summaries]
    return report


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if not k.startswith("_")}
