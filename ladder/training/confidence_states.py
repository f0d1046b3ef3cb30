"""Calibration per set of models asked: how likely each answer in hand, and each model not yet asked, is right.

A cascade that has asked a set S of models knows their answers, whether those answers agree, and the
confidences it read. For every S (a bit mask over the models) and every model, one logistic model reads
the prompt, the task, every model's prefill P, each asked model's calibrated P (read: its confidence;
unread: a self-check not paid for, so the prefill P stands in) and the agreement of every pair of asked
answers; it gives P(that answer is right) for a model in S and P(that model would be right) for one not
in S. Which self-checks a plan pays for is part of the plan (`READS`: none, or the cheaper models'), so
each read policy has its own fits. Fitted on training rows only (training side out-of-fold).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold

from ladder.core.answers import agreement as answer_agreement
from ladder.core.confidence_plan import logit
from ladder.training.confidence import FOLDS, SELF_CHECK, Side, reduce_prompts
from ladder.training.dataset import RoutingData

READS = ("none", "cheaper")
"""Which self-checks a plan pays to read: none, or those of every model but the two dearest (reading the
dearest ones' costs most of an answer from the best model, and did not pay on training rows)."""
STATE_PROMPT_DIMS = 8
STATE_C = 0.3


@dataclass(frozen=True)
class States:
    """One side's estimates. ``held`` and ``ahead`` are [reads, 2**models, rows, models]: under a read
    policy, once the models in a bit mask have answered, P(model m's answer is right) for m in the mask
    (NaN otherwise) and P(model j would be right) for j not in it (NaN otherwise); ``read`` [reads, rows,
    models] says whose confidence the policy reads (and pays for); ``prefill`` [rows, models] is the
    router's P before any answer."""

    prefill: np.ndarray
    held: np.ndarray
    ahead: np.ndarray
    read: np.ndarray


def agreement(data: RoutingData) -> np.ndarray:
    """[rows, models, models]: every pair of models' answers' `ladder.core.answers.agreement` (+1 agree, -1
    differ, for long free text the word overlap mapped to [-1, 1]). Read from the answers alone, so it costs
    nothing beyond the answers."""
    n, models = data.labels.shape
    out = np.zeros((n, models, models))
    if data.answers is None:
        return out
    for i in range(n):
        for a, b in itertools.combinations(range(models), 2):
            out[i, a, b] = out[i, b, a] = answer_agreement(data.answers[i, a], data.answers[i, b])
    return out


def _standardised_fit(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An L2-penalised logistic model on standardised columns (penalty ``1 / (2c) |w|^2``, as
    scikit-learn's ``C``; the intercept is not penalised), fitted by Newton steps: hundreds of these small
    fits take seconds, where a general solver takes minutes on a shared machine. Returns (weights with the
    intercept first, column means, column scales)."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    design = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    penalty = np.full(design.shape[1], 1.0 / c)
    penalty[0] = 0.0
    w = np.zeros(design.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        grad = design.T @ (p - y) + penalty * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        move = np.linalg.solve(hess, grad)
        w -= move
        if np.abs(move).max() < 1e-8:
            break
    return w, mean, scale


def _newton(x: np.ndarray, y: np.ndarray, x_new: np.ndarray, c: float) -> np.ndarray:
    """P on ``x_new`` of `_standardised_fit` on (``x``, ``y``) (a constant label: that label)."""
    if y.min() == y.max():
        return np.full(len(x_new), float(y[0]))
    w, mean, scale = _standardised_fit(x, y, c)
    new = np.hstack([np.ones((len(x_new), 1)), (x_new - mean) / scale])
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(new @ w, -30, 30))))


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = STATE_C) -> tuple[float, np.ndarray]:
    """`_standardised_fit` on the columns' own scale: (intercept, one weight per column); a constant label
    gives a certain intercept and no weight."""
    if y.min() == y.max():
        return (30.0 if y[0] > 0.5 else -30.0), np.zeros(x.shape[1])
    w, mean, scale = _standardised_fit(x, y, c)
    weights = w[1:] / scale
    return float(w[0] - (weights * mean).sum()), weights


def _both_sides(x: np.ndarray, y: np.ndarray, x_new: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold P on the training rows, and P on ``x_new`` from a fit on every training row."""
    oof = np.zeros(len(y))
    for fit_rows, held in KFold(FOLDS, shuffle=True, random_state=seed).split(x):
        oof[held] = _newton(x[fit_rows], y[fit_rows], x[held], STATE_C)
    return oof, _newton(x, y, x_new, STATE_C)


def read_masks(train: RoutingData, data: RoutingData) -> np.ndarray:
    """[reads, rows, models]: whose confidence each read policy reads on ``data``'s rows (a confidence
    that comes with the answer is always read: it is free)."""
    models = len(train.models)
    price = np.nanmean(train.costs, axis=0)
    rank = np.argsort(np.argsort(price))
    free = np.ones((len(data), models), dtype=bool)
    if data.confidence_kinds is not None:
        free = data.confidence_kinds != SELF_CHECK
    policy = {"none": np.zeros(models, bool), "cheaper": rank < models - 2}
    return np.stack([free | policy[r][None, :] for r in READS])


def _features(
    mask: int, read: np.ndarray, side: Side, prompt: np.ndarray, tasks: np.ndarray, agree: np.ndarray
) -> np.ndarray:
    models = side.prefill.shape[1]
    inside = [m for m in range(models) if mask >> m & 1]
    known = [np.where(read[:, m], side.calibrated[:, m], side.prefill[:, m]) for m in inside]
    parts = [prompt, tasks, logit(side.prefill)]
    parts += [logit(np.stack(known, axis=1))]
    pairs = [agree[:, a, b] for a, b in itertools.combinations(inside, 2)]
    if pairs:
        together = np.stack(pairs, axis=1)
        # agreement means more on some tasks (a letter) than on others (free text): one weight per task
        parts += [together, (together[:, :, None] * tasks[:, None, :]).reshape(len(together), -1)]
    return np.hstack(parts)


def fit_states(
    train: RoutingData,
    test: RoutingData,
    sides: tuple[Side, Side],
    prompts: tuple[np.ndarray, np.ndarray],
    seed: int = 0,
) -> tuple[States, States]:
    """`States` on both sides; ``sides`` are `fit_confidence`'s single-model estimates, ``prompts`` the
    (train, test) prompt embeddings."""
    models = len(train.models)
    data = (train, test)
    reduced = reduce_prompts(prompts, STATE_PROMPT_DIMS)
    names = sorted({t or "" for t in train.tasks})
    tasks = [np.array([[t == u for u in names] for t in d.tasks], dtype=np.float64) for d in data]
    agree = [agreement(d) for d in data]
    reads = [read_masks(train, d) for d in data]
    shape = (len(READS), 2**models)
    held = [np.full((*shape, len(d), models), np.nan) for d in data]
    ahead = [np.full((*shape, len(d), models), np.nan) for d in data]
    fitted: dict[tuple[int, tuple[bool, ...], int], tuple[np.ndarray, ...]] = {}
    for r in range(len(READS)):
        for mask in range(1, 2**models):
            x = [_features(mask, reads[s][r], sides[s], reduced[s], tasks[s], agree[s]) for s in (0, 1)]
            # a policy that reads the same confidences within the mask gives the same fits
            key_reads = tuple(bool(reads[0][r][:, m].all()) for m in range(models) if mask >> m & 1)
            for m in range(models):
                key = (mask, key_reads, m)
                if key not in fitted:
                    fitted[key] = _both_sides(x[0], train.labels[:, m].astype(np.float64), x[1], seed)
                target = held if mask >> m & 1 else ahead
                for s in (0, 1):
                    target[s][r, mask, :, m] = fitted[key][s]
    return tuple(  # type: ignore[return-value]
        States(sides[s].prefill, held[s], ahead[s], reads[s]) for s in (0, 1)
    )
