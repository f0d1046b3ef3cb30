"""Calibrated cascades played over recorded answers: each setting's per-question correctness, cost, latency.

Every question pays for every call its plan made: each answer call, and the self-check call of an answer
whose confidence the plan read (its `confidence_cost_usd`; 0 where the confidence came with the answer).
Latency is the sum of the answer calls' recorded latencies (they run one after another; the self-check
calls' latencies are not recorded and not counted).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ladder.core.rung import KEEP, RungSettings, answer_to_return, next_asks, worth_reading
from ladder.training.confidence import Side
from ladder.training.confidence_states import READS, States
from ladder.training.dataset import RoutingData

COST_WEIGHTS = (0.0, *np.logspace(1.0, 4.6, 30).tolist())
MARGINS = (-0.05, 0.0, 0.05, 0.1, 0.2)
MAX_STAGES = (2, 3, 5)
GRID_QUANTILES = 6


@dataclass(frozen=True)
class Outcomes:
    """Per setting and question ([settings, questions] each): right or not, USD paid, latency in ms,
    models asked."""

    correct: np.ndarray
    cost: np.ndarray
    latency_ms: np.ndarray
    calls: np.ndarray

    def take(self, settings: Sequence[int], rows: np.ndarray | None = None) -> Outcomes:
        """The chosen settings (and questions)."""
        pick = np.asarray(settings, dtype=np.int64)
        arrays = [a[pick] if rows is None else a[pick][:, rows] for a in self.arrays()]
        return Outcomes(*arrays)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.correct, self.cost, self.latency_ms, self.calls


def _calls(data: RoutingData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    check = np.zeros(data.costs.shape) if data.confidence_costs is None else data.confidence_costs
    latency = np.zeros(data.costs.shape) if data.latencies_ms is None else data.latencies_ms
    return data.costs.astype(np.float64), np.nan_to_num(check.astype(np.float64)), latency.astype(np.float64)


def expected_costs(train: RoutingData, data: RoutingData) -> tuple[np.ndarray, np.ndarray]:
    """What asking each model is expected to cost on each of ``data``'s questions ([rows, models] each):
    its mean answer cost, and its mean self-check cost, on the training questions of the same confidence
    kind."""
    answer, check, _ = _calls(train)
    out = (np.zeros(data.costs.shape), np.zeros(data.costs.shape))
    for m in range(len(data.models)):
        kinds = np.full(len(data), "") if data.confidence_kinds is None else data.confidence_kinds[:, m]
        seen = np.full(len(train), "") if train.confidence_kinds is None else train.confidence_kinds[:, m]
        for kind in set(kinds.tolist()):
            same = seen == kind if (seen == kind).any() else np.ones(len(train), dtype=bool)
            out[0][kinds == kind, m] = answer[same, m].mean()
            out[1][kinds == kind, m] = check[same, m].mean()
    return out


def _price(
    expected: tuple[np.ndarray, np.ndarray], prefill: np.ndarray, asked: np.ndarray, setting: RungSettings
) -> np.ndarray:
    """Each model's expected price if asked now: its answer, and its self-check where the plan would read
    it (a stage would be left, a likelier model could follow, and reading is worth its price)."""
    answer, check = expected
    unasked = np.where(asked, -np.inf, prefill)
    could_follow = (asked.sum(axis=1, keepdims=True) + 1 < setting.max_stages) & (
        unasked < unasked.max(axis=1, keepdims=True)
    )
    return np.asarray(answer + check * worth_reading(prefill, check, could_follow, setting))


def play(
    data: RoutingData, side: Side, expected: tuple[np.ndarray, np.ndarray], settings: Sequence[RungSettings]
) -> Outcomes:
    """Each setting's calibrated cascade (`ladder.core.rung.next_asks`) on every question of ``data``;
    ``expected`` is `expected_costs` for its questions."""
    answer, check, latency = _calls(data)
    n, models = data.labels.shape
    rows = np.arange(n)
    out = [np.zeros((len(settings), n)) for _ in range(4)]
    for k, setting in enumerate(settings):
        asked = np.zeros((n, models), dtype=bool)
        current = np.full(n, -1)
        p_keep = np.full(n, np.nan)
        live = np.ones(n, dtype=bool)
        for _ in range(models):
            q = np.where((current < 0)[:, None], side.prefill, side.after[rows, np.maximum(current, 0)])
            choice = next_asks(p_keep, q, _price(expected, side.prefill, asked, setting), asked, setting)
            live &= choice != KEEP
            if not live.any():
                break
            ask = np.where(live, choice, 0)
            asked[rows[live], ask[live]] = True
            current = np.where(live, ask, current)
            out[1][k] += np.where(live, answer[rows, ask], 0.0)
            out[2][k] += np.where(live, latency[rows, ask], 0.0)
            # the answer's confidence is read (a self-check paid) only where another model could follow
            # and reading is worth its price
            follow = next_asks(np.zeros(n), side.prefill, expected[0], asked, setting) != KEEP
            worth = worth_reading(side.prefill[rows, ask], check[rows, ask], follow, setting)
            read = live & worth
            out[1][k] += np.where(read, check[rows, ask], 0.0)
            p_keep = np.where(live, np.where(read, side.calibrated[rows, ask], np.inf), p_keep)
        out[0][k] = data.labels[rows, np.maximum(current, 0)]
        out[3][k] = asked.sum(axis=1)
    return Outcomes(*out)


def rung_grid(stages: Sequence[int] = MAX_STAGES) -> list[RungSettings]:
    """The calibrated cascade's settings tried on training rows (max_stages 1 is the router alone)."""
    if tuple(stages) == (1,):
        return [RungSettings(w, 0.0, 1) for w in COST_WEIGHTS]
    return [RungSettings(w, b, s) for s in stages for b in MARGINS for w in COST_WEIGHTS]


def frontier(outcomes: Outcomes) -> list[int]:
    """Settings no cheaper setting matches in accuracy (on the rows given), cheapest first."""
    accuracy, cost = outcomes.correct.mean(axis=1), outcomes.cost.mean(axis=1)
    kept, best = [], -1.0
    for k in sorted(range(len(accuracy)), key=lambda k: (cost[k], -accuracy[k])):
        if accuracy[k] > best + 1e-12:
            kept.append(k)
            best = accuracy[k]
    return kept


@dataclass(frozen=True)
class Chain:
    """A fixed chain on raw confidence: rung k's answer is kept when its raw confidence >= thresholds[k]."""

    models: tuple[int, ...]
    thresholds: tuple[float, ...]


def chain_grid(train: RoutingData, longest: int = 5) -> list[Chain]:
    """Every chain of models in price order (2 to ``longest`` rungs), with every combination of
    thresholds on a quantile grid of each rung's raw training confidence (the grid-search baseline)."""
    assert train.answer_logprobs is not None
    price = np.nanmean(train.costs, axis=0)
    order = sorted(range(len(train.models)), key=lambda m: price[m])
    grids = {}
    for m in order:
        lp = np.nan_to_num(train.answer_logprobs[:, m].astype(np.float64), nan=-np.inf)
        finite = lp[np.isfinite(lp)]
        grids[m] = np.unique(np.quantile(finite, np.linspace(0.05, 0.95, GRID_QUANTILES)))
    chains = []
    for length in range(2, longest + 1):
        for rungs in itertools.combinations(order, length):
            for cuts in itertools.product(*(grids[m].tolist() for m in rungs[:-1])):
                chains.append(Chain(rungs, tuple(cuts)))
    return chains


def play_chains(data: RoutingData, chains: Sequence[Chain], confidence: np.ndarray | None = None) -> Outcomes:
    """Each chain on every question: every rung but the last reads its confidence (self-check paid).
    ``confidence`` ([rows, models]) is what the thresholds read; by default the raw log-probability."""
    answer, check, latency = _calls(data)
    if confidence is None:
        assert data.answer_logprobs is not None
        confidence = data.answer_logprobs
    lp = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=-np.inf)
    n = len(data)
    out = [np.zeros((len(chains), n), dtype=np.float32) for _ in range(4)]
    for k, chain in enumerate(chains):
        open_ = np.ones(n, dtype=bool)
        correct = np.zeros(n)
        for depth, m in enumerate(chain.models):
            last = depth == len(chain.models) - 1
            out[1][k] += np.where(open_, answer[:, m] + (0.0 if last else check[:, m]), 0.0)
            out[2][k] += np.where(open_, latency[:, m], 0.0)
            out[3][k] += open_
            keep = open_ & (last | (lp[:, m] >= (np.inf if last else chain.thresholds[depth])))
            correct = np.where(keep, data.labels[:, m], correct)
            open_ &= ~keep
        out[0][k] = correct
    return Outcomes(*out)


@dataclass(frozen=True)
class StateSettings:
    """A cascade over sets of answers: the step rule's settings and which self-checks it reads
    (an index into `ladder.training.confidence_states.READS`)."""

    rung: RungSettings
    reads: int


def expected_task_costs(train: RoutingData, data: RoutingData) -> tuple[np.ndarray, np.ndarray]:
    """Like `expected_costs`, per task (known from the prompt's kind) where the training rows have it."""
    answer, check, _ = _calls(train)
    out = expected_costs(train, data)
    seen = np.array([t or "" for t in train.tasks])
    for task in {t or "" for t in data.tasks}:
        rows, same = np.array([(t or "") == task for t in data.tasks]), seen == task
        if task and same.any():
            out[0][rows] = answer[same].mean(axis=0)
            out[1][rows] = check[same].mean(axis=0)
    return out


def play_states(
    data: RoutingData, states: States, expected: tuple[np.ndarray, np.ndarray], settings: Sequence[StateSettings]
) -> Outcomes:
    """Each setting's cascade on every question: the step rule (`next_asks`) reads P(each model right)
    given the answers so far, keeps when none beats the best answer in hand, and returns that answer
    (`answer_to_return`); a self-check is paid for each asked model whose confidence the policy reads."""
    answer, check, latency = _calls(data)
    n, models = data.labels.shape
    rows = np.arange(n)
    out = [np.zeros((len(settings), n)) for _ in range(4)]
    for k, setting in enumerate(settings):
        read = states.read[setting.reads]
        paid = np.where(read, check, 0.0)
        price = expected[0] + np.where(read, expected[1], 0.0)
        mask = np.zeros(n, dtype=np.int64)
        asked = np.zeros((n, models), dtype=bool)
        p_keep = np.full(n, np.nan)
        live = np.ones(n, dtype=bool)
        for _ in range(models):
            q = np.where((mask == 0)[:, None], states.prefill, states.ahead[setting.reads, mask, rows])
            choice = next_asks(p_keep, q, price, asked, setting.rung)
            live &= choice != KEEP
            if not live.any():
                break
            ask = np.where(live, choice, 0)
            asked[rows[live], ask[live]] = True
            mask = np.where(live, mask | (1 << ask), mask)
            out[1][k] += np.where(live, answer[rows, ask] + paid[rows, ask], 0.0)
            out[2][k] += np.where(live, latency[rows, ask], 0.0)
            p_keep = np.nanmax(np.where(asked, states.held[setting.reads, mask, rows], np.nan), axis=1)
        returned = answer_to_return(states.held[setting.reads, mask, rows], asked)
        out[0][k] = data.labels[rows, returned]
        out[3][k] = asked.sum(axis=1)
    return Outcomes(*out)


def state_grid(stages: Sequence[int] = MAX_STAGES) -> list[StateSettings]:
    """The cascade-over-answers settings tried on training rows."""
    return [StateSettings(r, i) for i in range(len(READS)) for r in rung_grid(stages)]
