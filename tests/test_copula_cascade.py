"""Zellinger & Thomson's Markov-copula cascade: the copula fit, the model's expected error and cost, the tuning."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import special, stats

from ladder.training.copula_cascade import optimise
from ladder.training.copula_model import ChainModel, gumbel_conditional_sample, gumbel_theta, transform


def _gumbel_pairs(theta: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Marshall-Olkin draws of the Gumbel copula: a positive stable frailty (Kanter's representation)."""
    alpha = 1.0 / theta
    w, e = rng.uniform(0.0, np.pi, n), rng.exponential(size=n)
    a = (np.sin(alpha * w) ** alpha * np.sin((1 - alpha) * w) ** (1 - alpha) / np.sin(w)) ** (1 / (1 - alpha))
    v = (a / e) ** ((1 - alpha) / alpha)
    return np.exp(-((rng.exponential(size=(n, 2)) / v[:, None]) ** alpha))


@pytest.fixture(scope="module")
def model() -> ChainModel:
    """A three-model chain fitted on correlated synthetic confidences (weak, middling, strong)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 3))
    z[:, 1] += 0.8 * z[:, 0]
    z[:, 2] += 0.8 * z[:, 1]
    correct = (rng.random(z.shape) < special.expit(1.5 * z + np.array([-0.5, 0.3, 1.2]))).astype(np.float64)
    return ChainModel.fit(z, correct, np.array([1.0, 3.0, 20.0]), np.array([0.5, 0.5, 0.0]))


def test_transforms_are_the_authors() -> None:
    lp = np.log(np.array([0.5, 0.9, 0.25]))
    assert np.allclose(transform(lp, np.zeros(3, dtype=bool)), -np.log(1 - np.array([0.5, 0.9, 0.25])))
    assert np.allclose(transform(lp, np.ones(3, dtype=bool)), [0.0, -np.log(2) - np.log(0.1), np.log(0.5)])
    edges = transform(np.array([0.0, -np.inf]), np.array([True, True]))
    assert edges[0] == np.inf and edges[1] == -np.inf


@pytest.mark.parametrize("theta", [1.5, 2.0, 4.0])
def test_the_gumbel_fit_recovers_a_known_tau(theta: float) -> None:
    rng = np.random.default_rng(1)
    pairs = _gumbel_pairs(theta, 4000, rng)
    assert abs(gumbel_theta(pairs[:, 0], pairs[:, 1]) - theta) < 0.12 * theta
    # the model's own conditional sampler draws the same copula
    u = rng.random(4000)
    tau = stats.kendalltau(u, gumbel_conditional_sample(u, theta, rng)).statistic
    assert abs(tau - (1 - 1 / theta)) < 0.03


def test_independent_confidences_fit_the_independence_copula() -> None:
    rng = np.random.default_rng(2)
    assert gumbel_theta(rng.random(3000), rng.random(3000)) < 1.05


@pytest.mark.parametrize("s", [(0.3, 0.5), (0.7, 0.2), (0.0, 0.9), (0.5, 1.0)])
def test_expected_error_and_cost_match_draws_from_the_model(model: ChainModel, s: tuple[float, float]) -> None:
    chain = (0, 1, 2)
    snapped = model.snap(chain, np.array(s))
    correct, cost = model.expected(chain, snapped)
    x, right = model.sample(chain, 200_000, np.random.default_rng(3))
    keep_at = model.keep_at(chain, snapped)
    open_, got, paid = np.ones(len(x), dtype=bool), np.zeros(len(x)), np.zeros(len(x))
    for depth, m in enumerate(chain):
        last = depth == len(chain) - 1
        paid += open_ * (model.answer_usd[m] + (0.0 if last else model.check_usd[m]))
        keep = open_ & (last | (x[:, depth] >= (np.inf if last else keep_at[depth])))
        got = np.where(keep, right[:, depth], got)
        open_ &= ~keep
    assert abs(correct - got.mean()) < 0.006
    assert abs(cost - paid.mean()) < 0.01 * paid.mean()


def test_the_markov_model_differs_from_independence(model: ChainModel) -> None:
    """The copula matters: with rung 1 deferring its least confident half, rung 2 is expected right less
    often than its average (its confidence moves with rung 1's)."""
    chain = (0, 1)
    cells = model.means.shape[1]
    total, _ = model.expected(chain, np.array([0.5]))
    from_second = total - float(model.means[0][cells // 2 :].sum()) / cells
    assert model.thetas[(0, 1)] > 1.2
    assert from_second < 0.5 * float(model.means[1].mean()) - 0.01


@pytest.mark.parametrize("lam", [0.0, 0.01, 0.05, 0.2])
def test_the_optimiser_beats_a_coarse_grid_on_the_model_objective(model: ChainModel, lam: float) -> None:
    chain = (0, 1, 2)

    def loss(s: np.ndarray) -> float:
        correct, cost = model.expected(chain, s)
        return 1.0 - correct + lam * cost

    grid = min(loss(np.array(s)) for s in itertools.product(np.linspace(0.0, 1.0, 9), repeat=2))
    assert loss(optimise(model, chain, lam)) <= grid + 1e-4
