"""Zellinger & Thomson's cascade tuning: per-rung thresholds by continuous optimisation of the Markov-copula model.

For every chain of models in price order (2 to 5 rungs) and every cost sensitivity lambda of a sweep, the
thresholds minimise the model's expected error + lambda x expected cost (`ladder.training.copula_model`,
L-BFGS-B). As the authors tune per benchmark, one model is fitted per task on its training rows (the task
is known from the prompt's kind); a setting is a chain and a lambda, with each task's own thresholds.
Played over recorded answers by `ladder.training.confidence_plans.play_chains`. `auc_against_grid` repeats
the authors' comparison with grid-searched thresholds (area under the held-out error-cost curve).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from ladder.training.confidence_plans import Chain, Outcomes, play_chains
from ladder.training.copula_model import SELF_CHECK, ChainModel, transform
from ladder.training.dataset import RoutingData

LAMBDAS = (0.0, *np.logspace(-3.0, 1.0, 19).tolist())  # x 1 / the dearest model's mean price
POOLED = ""
GRID_STEP = 0.05


def _z(data: RoutingData) -> np.ndarray:
    assert data.answer_logprobs is not None
    kinds = data.confidence_kinds
    check = np.zeros(data.costs.shape, dtype=bool) if kinds is None else kinds == SELF_CHECK
    return transform(data.answer_logprobs, check)


def _prices(data: RoutingData) -> tuple[np.ndarray, np.ndarray]:
    check = np.zeros(data.costs.shape) if data.confidence_costs is None else data.confidence_costs
    return np.nanmean(data.costs, axis=0), np.nanmean(np.nan_to_num(np.asarray(check, dtype=np.float64)), axis=0)


@dataclass(frozen=True)
class Fitted:
    """One `ChainModel` per task seen in training (and one over all training rows for other tasks)."""

    models: dict[str, ChainModel]
    chains: list[tuple[int, ...]]
    scale: float  # the dearest model's mean price on training rows

    def group(self, data: RoutingData) -> np.ndarray:
        return np.array([t if t in self.models else POOLED for t in (t or "" for t in data.tasks)])

    def calibrated(self, data: RoutingData) -> np.ndarray:
        """Each row's calibrated confidences X ([rows, models]) under its task's model."""
        z, groups = _z(data), self.group(data)
        out = np.zeros(z.shape)
        for g in set(groups.tolist()):
            out[groups == g] = self.models[g].calibrated(z[groups == g])
        return out


def fit(train: RoutingData, needed: set[str] | None = None, longest: int = 5) -> Fitted:
    """The per-task models (one over all training rows too, where a task in ``needed`` has no training
    rows) and the chains in price order."""
    z, labels = _z(train), train.labels.astype(np.float64)
    tasks = np.array([t or "" for t in train.tasks])
    models = {}
    if needed is None or needed - set(tasks.tolist()) or POOLED in tasks:
        models[POOLED] = ChainModel.fit(z, labels, *_prices(train))
    for task in sorted(set(tasks.tolist()) - {POOLED}):
        rows = tasks == task
        models[task] = ChainModel.fit(z[rows], labels[rows], *_prices(train.subset(rows)))
    answer, _ = _prices(train)
    order = sorted(range(len(train.models)), key=lambda m: answer[m])
    chains = [c for k in range(2, longest + 1) for c in itertools.combinations(order, k)]
    return Fitted(models, chains, float(answer.max()))


def optimise(model: ChainModel, chain: tuple[int, ...], lam: float, warm: np.ndarray | None = None) -> np.ndarray:
    """Thresholds on U minimising expected error + ``lam`` x expected cost (L-BFGS-B from the middle of
    the box, as the authors start, and from ``warm``; the better one), moved off the point masses."""

    def loss(s: np.ndarray) -> tuple[float, np.ndarray]:
        return model.loss(chain, s, lam)

    starts = [np.full(len(chain) - 1, 0.5)] + ([] if warm is None else [warm])
    bounds = [(0.0, 1.0)] * (len(chain) - 1)
    runs = [optimize.minimize(loss, s0, jac=True, method="L-BFGS-B", bounds=bounds) for s0 in starts]
    best = np.clip(min(runs, key=lambda r: float(r.fun)).x, 0.0, 1.0)
    snapped = model.snap(chain, best)
    return snapped if loss(snapped)[0] <= loss(best)[0] + 1e-6 else best


@dataclass(frozen=True)
class Setting:
    """A chain, a cost sensitivity, and each task's keep-thresholds on calibrated confidence (and on the
    model's latent uniforms, where it predicts the setting's error and cost)."""

    chain: tuple[int, ...]
    lam: float
    keep_at: dict[str, tuple[float, ...]]
    latent: dict[str, tuple[float, ...]]

    def describe(self, names: list[str]) -> str:
        cuts = "; ".join(f"{g or 'other'}: " + "/".join(f"{t:.3g}" for t in ts) for g, ts in self.keep_at.items())
        return " > ".join(names[m] for m in self.chain) + f" (lambda={self.lam:.3g}; keep at P >= {cuts})"


def tune(fitted: Fitted, lambdas: tuple[float, ...] = LAMBDAS) -> list[Setting]:
    """Every chain at every lambda (in units of 1 / the dearest model's price), thresholds per task."""
    settings = []
    for chain in fitted.chains:
        warm: dict[str, np.ndarray | None] = dict.fromkeys(fitted.models)
        for lam in lambdas:
            keep_at, latent = {}, {}
            for g, model in fitted.models.items():
                s = optimise(model, chain, lam / fitted.scale, warm[g])
                warm[g] = s
                keep_at[g], latent[g] = tuple(model.keep_at(chain, s).tolist()), tuple(s.tolist())
            settings.append(Setting(chain, lam, keep_at, latent))
    return settings


def play(data: RoutingData, fitted: Fitted, settings: list[Setting]) -> Outcomes:
    """Each setting on every question of ``data`` (each row read by its task's thresholds)."""
    x, groups = fitted.calibrated(data), fitted.group(data)
    parts = []
    for setting in settings:
        keep = np.zeros(x.shape)
        for g, cuts in setting.keep_at.items():
            keep[np.ix_(groups == g, list(setting.chain[:-1]))] = cuts
        chain = Chain(setting.chain, (0.0,) * (len(setting.chain) - 1))
        parts.append(play_chains(data, [chain], confidence=x - keep))
    return Outcomes(*(np.concatenate(a) for a in zip(*(p.arrays() for p in parts), strict=True)))


def _grid_search(x: np.ndarray, chain: tuple[int, ...], answer: np.ndarray, check: np.ndarray) -> np.ndarray:
    """The authors' grid search: thresholds on quantiles of each rung's training X (step `GRID_STEP`),
    each combination's expected correctness (the returning rung's X) and cost on the training rows; the
    Pareto-optimal combinations ([k, rungs - 1])."""
    grids = [np.unique(np.quantile(x[:, m], np.arange(0.01, 0.99, GRID_STEP))) for m in chain[:-1]]
    combos = np.array(list(itertools.product(*grids)))
    correct, cost = np.zeros(len(combos)), np.zeros(len(combos))
    for start in range(0, len(combos), 4096):
        cuts = combos[start : start + 4096]
        open_ = np.ones((len(cuts), len(x)), dtype=bool)
        got, paid = np.zeros(open_.shape), np.zeros(open_.shape)
        for depth, m in enumerate(chain):
            last = depth == len(chain) - 1
            paid += open_ * (answer[m] + (0.0 if last else check[m]))
            keep = open_ if last else open_ & (x[None, :, m] >= cuts[:, [depth]])
            got += keep * x[None, :, m]
            open_ &= ~keep
        correct[start : start + len(cuts)], cost[start : start + len(cuts)] = got.mean(1), paid.mean(1)
    order = np.lexsort((-correct, cost))
    best, kept = -1.0, []
    for k in order:
        if correct[k] > best + 1e-12:
            kept.append(k)
            best = correct[k]
    return combos[kept]


def _error_auc(cost: np.ndarray, error: np.ndarray, low: float, high: float) -> float:
    """Mean error over [low, high] of the curve through the points (sorted by cost, linear between)."""
    order = np.argsort(cost)
    grid = np.linspace(low, high, 513)
    return float(np.interp(grid, cost[order], error[order]).mean())


def auc_against_grid(
    train: RoutingData, test: RoutingData, fitted: Fitted, settings: list[Setting]
) -> dict[str, object]:
    """Per task and chain of 3 or more models: the held-out error-cost curve of the continuous tuning
    (its lambda sweep) against that of grid-searched thresholds, as the authors compare them: each curve's
    mean error over the cost range both cover, and the relative improvement 1 - AUC_model / AUC_grid;
    and how far the model's predicted error is from the held-out error along its sweep."""
    x_train, x_test = fitted.calibrated(train), fitted.calibrated(test)
    rows: list[dict[str, object]] = []
    train_tasks, test_tasks = np.array([t or "" for t in train.tasks]), np.array([t or "" for t in test.tasks])
    for task in sorted(set(test_tasks.tolist()) & set(fitted.models) - {POOLED}):
        tr, te = train_tasks == task, np.flatnonzero(test_tasks == task)
        answer, check = _prices(train.subset(tr))
        for chain in (c for c in fitted.chains if len(c) >= 3):
            ours = [k for k, s in enumerate(settings) if s.chain == chain]
            model_curve = play(test, fitted, [settings[k] for k in ours]).take(range(len(ours)), te)
            cuts = _grid_search(x_train[tr], chain, answer, check)
            grid_curve = play_chains(
                test.subset(te), [Chain(chain, tuple(c)) for c in cuts.tolist()], confidence=x_test[te]
            )
            curves = [(o.cost.mean(axis=1), 1.0 - o.correct.mean(axis=1)) for o in (model_curve, grid_curve)]
            low, high = max(c.min() for c, _ in curves), min(c.max() for c, _ in curves)
            if high <= low:
                continue
            ours_auc, grid_auc = (_error_auc(c, e, low, high) for c, e in curves)
            predicted = [1.0 - fitted.models[task].expected(chain, np.array(settings[k].latent[task]))[0] for k in ours]
            rows.append(
                {
                    "task": task,
                    "chain": [test.models[m] for m in chain],
                    "model_auc": round(ours_auc, 5),
                    "grid_auc": round(grid_auc, 5),
                    "improvement": round(1.0 - ours_auc / grid_auc, 4),
                    "grid_points": len(cuts),
                    "model_error_gap": round(float(np.mean(np.abs(np.array(predicted) - curves[0][1]))), 4),
                }
            )
    gains = np.array([r["improvement"] for r in rows], dtype=np.float64)
    lengths = np.array([len(r["chain"]) for r in rows])  # type: ignore[arg-type]
    return {
        "mean_improvement": round(float(gains.mean()), 4) if rows else None,
        "per_length": {int(k): round(float(gains[lengths == k].mean()), 4) for k in sorted(set(lengths.tolist()))},
        "model_better": int((gains > 0).sum()),
        "mean_model_error_gap": round(float(np.mean([r["model_error_gap"] for r in rows])), 4) if rows else None,
        "comparisons": len(rows),
        "rows": rows,
    }
