"""The recommended calibrated cascade in the form the gateway serves: fitted from what it has, played as it runs.

`fit_served_plan` fits a `ladder.core.confidence_plan.CalibratedPlan` on every training row for one setting
of the cascade over sets of answers (`ladder.training.confidence_plans.StateSettings`). The plan reads only
what the gateway has at request time, so it drops two inputs of the plan the report measures: the task
label (the gateway is never told it; agreement gets one weight for every task) and the prompt features
(the report's may be tf-idf axes the gateway cannot compute; the router's P(correct) carries what the
prompt says). `play_plan` plays a plan over recorded answers through the same functions the gateway calls
per request, so the report's figures for it are what serving it costs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ladder.core.answers import agreement as answer_agreement
from ladder.core.confidence_plan import (
    CalibratedPlan,
    Floats,
    Logistic,
    PlanModel,
    confidence_columns,
    logit,
    reads_answer_logprob,
    set_name,
)
from ladder.core.rung import KEEP, answer_to_return, next_asks
from ladder.training.confidence import SELF_CHECK
from ladder.training.confidence_plans import StateSettings
from ladder.training.confidence_states import agreement, fit_logistic, read_masks
from ladder.training.dataset import RoutingData


def _logistic(columns: dict[str, Floats], y: np.ndarray) -> Logistic:
    names = list(columns)
    intercept, weights = fit_logistic(np.stack([columns[n] for n in names], axis=1), y.astype(np.float64))
    return Logistic(intercept=intercept, weights={n: float(w) for n, w in zip(names, weights, strict=True)})


def fit_served_plan(train: RoutingData, router_p: Floats, setting: StateSettings) -> CalibratedPlan:
    """The servable plan for ``setting``, fitted on every row of ``train``; ``router_p`` [rows, models] is
    the prefill P(correct) that stands in for the gateway's router (out-of-fold on these rows)."""
    assert train.answer_logprobs is not None
    names, models = train.models, len(train.models)
    lp = train.answer_logprobs.astype(np.float64)
    kinds = train.confidence_kinds
    is_check = np.zeros(lp.shape, dtype=bool) if kinds is None else kinds == SELF_CHECK
    policy = read_masks(train, train)[setting.reads]
    read = policy & ~np.isnan(lp)
    check_costs = np.zeros(lp.shape) if train.confidence_costs is None else train.confidence_costs
    check_usd = np.nan_to_num(check_costs.astype(np.float64)).mean(axis=0)
    answer_usd = np.nanmean(train.costs.astype(np.float64), axis=0)
    # the policy pays for a model's self-check where it reads the answers whose confidence is one
    pays = [bool(is_check[:, m].any() and policy[is_check[:, m], m].all()) for m in range(models)]
    known = router_p.astype(np.float64).copy()
    plan_models = []
    for m in range(models):
        columns = {**confidence_columns(lp[:, m], is_check[:, m]), "router": logit(router_p[:, m])}
        calibrator = _logistic(columns, train.labels[:, m])
        known[:, m] = np.where(read[:, m], calibrator.predict(columns, len(train)), router_p[:, m])
        plan_models.append(
            PlanModel(
                name=names[m],
                answer_usd=float(answer_usd[m]),
                self_check_usd=float(check_usd[m]),
                self_check=pays[m],
                calibrator=calibrator,
            )
        )
    agree = agreement(train)
    states: dict[str, dict[str, Logistic]] = {}
    if setting.rung.max_stages > 1:
        for size in range(1, min(setting.rung.max_stages, models) + 1):
            for inside in itertools.combinations(range(models), size):
                columns = {f"router:{n}": logit(router_p[:, j]) for j, n in enumerate(names)}
                columns.update({f"p:{names[j]}": logit(known[:, j]) for j in inside})
                for a, b in itertools.combinations(inside, 2):
                    columns[f"agree:{names[a]}|{names[b]}"] = agree[:, a, b]
                key = set_name([names[j] for j in inside])
                states[key] = {names[m]: _logistic(columns, train.labels[:, m]) for m in range(models)}
    rung = setting.rung
    return CalibratedPlan(
        cost_weight=rung.cost_weight,
        margin=rung.margin,
        max_stages=rung.max_stages,
        models=tuple(plan_models),
        states=states,
    )


@dataclass(frozen=True)
class PlanPlay:
    """A plan played over recorded answers, per question: the models asked in order ([rows, stages], -1
    past the last), whose self-checks were paid ([rows, models]), the answer returned, USD paid."""

    order: npt.NDArray[np.int64]
    checked: npt.NDArray[np.bool_]
    returned: npt.NDArray[np.int64]
    cost: Floats


def _estimates(
    plan: CalibratedPlan, masks: np.ndarray, router_p: Floats, known: Floats, agree: Floats
) -> tuple[Floats, Floats]:
    held, ahead = np.full(router_p.shape, np.nan), np.full(router_p.shape, np.nan)
    for mask in np.unique(masks[masks > 0]).tolist():
        rows = masks == mask
        held[rows], ahead[rows] = plan.estimates(int(mask), router_p[rows], known[rows], agree[rows])
    return held, ahead


def play_plan(
    plan: CalibratedPlan,
    router_p: Floats,
    answers: np.ndarray,
    answer_lp: Floats,
    check_lp: Floats,
    answer_cost: Floats,
    check_cost: Floats,
    available: npt.NDArray[np.bool_] | None = None,
) -> PlanPlay:
    """``plan`` over recorded answers ([rows, models] each, in the plan's model order): the router's P, the
    answer texts, each answer's own log-probability and a self-check's log P("yes") (NaN: none), and what
    the answer and the self-check calls cost. Each step is `ladder.core.rung.next_asks` on the plan's
    estimates; an answer is read by its own logprob where it picks an option letter, else by a self-check
    where the plan pays for one (paid whether or not it brings a confidence); once kept, the answer with
    the highest calibrated P is returned (`ladder.core.rung.answer_to_return`). A model that is not
    ``available`` ([rows, models]; default: every one) is never asked, as the gateway passes over a model
    whose answer call failed; a row where none may answer asks nobody (``order`` all -1)."""
    n, models = router_p.shape
    rows = np.arange(n)
    agree = np.zeros((n, models, models))
    for i in range(n):
        for a, b in itertools.combinations(range(models), 2):
            agree[i, a, b] = agree[i, b, a] = answer_agreement(answers[i, a], answers[i, b])
    order = np.full((n, plan.max_stages), -1, dtype=np.int64)
    checked = np.zeros((n, models), dtype=bool)
    asked = np.zeros((n, models), dtype=bool)
    known = router_p.astype(np.float64).copy()
    masks = np.zeros(n, dtype=np.int64)
    cost = np.zeros(n)
    held = ahead = np.full((n, models), np.nan)
    p_keep = np.full(n, np.nan)
    price = np.broadcast_to(plan.prices(), (n, models))
    reachable = np.ones((n, models), dtype=bool) if available is None else np.asarray(available, dtype=bool)
    for stage in range(min(plan.max_stages, models)):
        q = np.where(reachable, np.where((masks == 0)[:, None], router_p, ahead), -np.inf)
        choice = next_asks(p_keep, q, price, asked, plan.rung)
        live = choice != KEEP
        if not live.any():
            break
        for m in np.unique(choice[live]).tolist():
            at = rows[live & (choice == m)]
            lp_own = [None if np.isnan(v) else float(v) for v in answer_lp[at, m]]
            own = np.array([reads_answer_logprob(answers[i, m], v) for i, v in zip(at, lp_own, strict=True)])
            spec = plan.models[m]
            check = np.array([spec.wants_self_check(answers[i, m], v) for i, v in zip(at, lp_own, strict=True)])
            lp = np.where(own, answer_lp[at, m], np.where(check, check_lp[at, m], np.nan))
            known[at, m] = plan.known(m, lp, check & ~own, router_p[at])
            checked[at, m] = check
            cost[at] += answer_cost[at, m] + np.where(check, check_cost[at, m], 0.0)
            asked[at, m] = True
            masks[at] |= 1 << m
            order[at, stage] = m
        held, ahead = _estimates(plan, masks, router_p, known, agree)
        p_keep = np.where(masks > 0, np.nanmax(np.where(asked, held, -np.inf), axis=1), np.nan)
    return PlanPlay(order, checked, answer_to_return(held, asked), cost)


def recorded_inputs(data: RoutingData) -> tuple[np.ndarray, Floats, Floats, Floats, Floats]:
    """`play_plan`'s recorded inputs from canonical data (answers, answer logprobs, self-check logprobs,
    answer costs, self-check costs), each confidence where its kind says."""
    assert data.answer_logprobs is not None
    lp = data.answer_logprobs.astype(np.float64)
    kinds = data.confidence_kinds
    is_check = np.zeros(lp.shape, dtype=bool) if kinds is None else kinds == SELF_CHECK
    answers = np.full(lp.shape, None, dtype=object) if data.answers is None else data.answers
    check_cost = np.zeros(lp.shape) if data.confidence_costs is None else data.confidence_costs
    return (
        answers,
        np.where(is_check, np.nan, lp),
        np.where(is_check, lp, np.nan),
        data.costs.astype(np.float64),
        np.nan_to_num(check_cost.astype(np.float64)),
    )
