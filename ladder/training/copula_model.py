"""Zellinger & Thomson's Markov-copula model of a cascade's calibrated confidences, and its expected error and cost.

Per model: the raw confidence transformed as the authors do (one-sided `-log(1 - p)` for an answer's own
log-probability, two-sided for a self-check's log P(yes)), a logistic calibration P(correct | transformed
confidence), and the marginal of the calibrated confidence X: point masses at its observed minimum and
maximum and a two-component beta mixture between them. Between two models a Gumbel copula (its parameter
from Kendall's tau) joins their latent uniforms U = F(X); a chain is a Markov model over the U's. The chain's
expected correctness and cost for per-rung thresholds (a rung keeps its answer when U >= its threshold s in
[0, 1]) are computed on a grid of cells of U (forward recursion through the copula's cell-to-cell
transition matrices), with E[correct | X] = X, as the calibration says.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats
from sklearn.linear_model import LogisticRegression

CELLS = 96
SELF_CHECK = "self_check_logprob"
_EPS = 1e-9


def transform(lp: np.ndarray, is_check: np.ndarray) -> np.ndarray:
    """The authors' transforms of log-probabilities: -log(1 - p) for answers, the two-sided log for
    self-checks (log 2 + log p below p = 1/2, -log 2 - log(1 - p) above); +-inf where p is 0 or 1."""
    lp = np.asarray(lp, dtype=np.float64)
    lp = np.where(np.isnan(lp), -np.inf, lp)
    with np.errstate(divide="ignore", invalid="ignore"):
        one_sided = -np.log(-np.expm1(np.minimum(lp, 0.0)))
        two_sided = np.where(lp >= np.log(0.5), one_sided - np.log(2.0), np.log(2.0) + lp)
    return np.asarray(np.where(np.asarray(is_check, dtype=bool), two_sided, one_sided))


@dataclass(frozen=True)
class Calibrator:
    """P(correct | transformed confidence) = sigmoid(intercept + slope * clip(z, low, high))."""

    intercept: float
    slope: float
    low: float
    high: float

    @classmethod
    def fit(cls, z: np.ndarray, correct: np.ndarray) -> Calibrator:
        finite = z[np.isfinite(z)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        x = np.clip(z, low, high)[:, None]
        if correct.min() == correct.max() or high <= low:
            rate = float(np.clip(correct.mean(), 1e-4, 1 - 1e-4))
            return cls(float(special.logit(rate)), 0.0, low, high)
        fit = LogisticRegression(C=1e4, max_iter=1000).fit(x, correct.astype(int))
        return cls(float(fit.intercept_[0]), float(fit.coef_[0, 0]), low, high)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(special.expit(self.intercept + self.slope * np.clip(z, self.low, self.high)))


@dataclass(frozen=True)
class Marginal:
    """A calibrated confidence's distribution: masses at ``low`` and ``high``, a beta mixture between."""

    low: float
    high: float
    p_low: float
    p_high: float
    weights: tuple[float, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray, components: int = 2) -> Marginal:
        low, high = float(x.min()), float(x.max())
        at_low, at_high = x <= low, x >= high
        at_low &= at_low.sum() > 1  # a mass is a value several rows tie at, not the one extreme row
        at_high &= at_high.sum() > 1
        p_low, p_high = float(at_low.mean()), float(at_high.mean())
        inner = (x[~at_low & ~at_high] - low) / max(high - low, _EPS)
        if high - low < _EPS:
            return cls(low, high, 1.0, 0.0, (1.0,), (1.0,), (1.0,))
        if inner.size < 10:
            return cls(low, high, p_low, p_high, (1.0,), (1.0,), (1.0,))
        return cls(low, high, p_low, p_high, *_beta_mixture(np.clip(inner, 1e-4, 1 - 1e-4), components))

    def _inner_cdf(self, y: np.ndarray) -> np.ndarray:
        parts = [w * stats.beta.cdf(y, a, b) for w, a, b in zip(self.weights, self.a, self.b, strict=True)]
        return np.asarray(sum(parts))

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """P(X <= x)."""
        y = np.clip((np.asarray(x, dtype=np.float64) - self.low) / max(self.high - self.low, _EPS), 0.0, 1.0)
        inner = self.p_low + (1.0 - self.p_low - self.p_high) * self._inner_cdf(y)
        return np.where(x >= self.high, 1.0, np.where(x < self.low, 0.0, inner))

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """The X at latent uniform ``u`` (``low`` on its lower mass, ``high`` on its upper one)."""
        grid = np.linspace(0.0, 1.0, 4097)
        cdf = self._inner_cdf(grid) + grid * 1e-12  # strictly increasing for the inversion
        share = 1.0 - self.p_low - self.p_high
        inner = np.clip((np.asarray(u) - self.p_low) / max(share, _EPS), 0.0, 1.0)
        x = self.low + (self.high - self.low) * np.interp(inner, cdf / cdf[-1], grid)
        return np.where(u < self.p_low, self.low, np.where(u > 1.0 - self.p_high, self.high, x))

    def cell_means(self, cells: int = CELLS, sub: int = 16) -> np.ndarray:
        """E[X | U in cell c] for ``cells`` equal cells of U."""
        u = (np.arange(cells * sub) + 0.5) / (cells * sub)
        return np.asarray(self.quantile(u).reshape(cells, sub).mean(axis=1))


def _beta_mixture(y: np.ndarray, components: int) -> tuple[tuple[float, ...], ...]:
    """Maximum-likelihood weights and shapes of a beta mixture on (0, 1)."""
    parts = np.array_split(np.sort(y), components)
    start = []
    for part in parts:
        m, v = float(part.mean()), float(part.var()) + 1e-3
        k = max(m * (1 - m) / v - 1.0, 0.5)
        start += [np.log(m * k), np.log((1 - m) * k)]
    start += [0.0] * (components - 1)

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shapes = np.exp(np.clip(theta[: 2 * components], -5, 6)).reshape(components, 2)
        logits = np.concatenate([[0.0], theta[2 * components :]])
        return np.exp(logits - special.logsumexp(logits)), shapes[:, 0], shapes[:, 1]

    log_y, log_1y = np.log(y)[None, :], np.log1p(-y)[None, :]

    def nll(theta: np.ndarray) -> float:
        w, a, b = unpack(theta)
        logs = np.log(w)[:, None] + (a[:, None] - 1) * log_y + (b[:, None] - 1) * log_1y - special.betaln(a, b)[:, None]
        return -float(special.logsumexp(logs, axis=0).sum())

    best = optimize.minimize(nll, np.array(start), method="L-BFGS-B")
    w, a, b = unpack(best.x)
    return tuple(w.tolist()), tuple(a.tolist()), tuple(b.tolist())


def gumbel_theta(x: np.ndarray, y: np.ndarray) -> float:
    """The Gumbel copula's parameter from Kendall's tau, theta = 1 / (1 - tau); 1 (independence) when
    tau <= 0."""
    tau = float(stats.kendalltau(x, y).statistic)
    return 1.0 if not np.isfinite(tau) or tau <= 0 else 1.0 / (1.0 - min(tau, 0.95))


def gumbel_cdf(u: np.ndarray, v: np.ndarray, theta: float) -> np.ndarray:
    """C(u, v) = exp(-((-log u)^theta + (-log v)^theta)^(1/theta))."""
    u, v = np.clip(u, 1e-300, 1.0), np.clip(v, 1e-300, 1.0)
    s = (-np.log(u)) ** theta + (-np.log(v)) ** theta
    return np.asarray(np.exp(-(s ** (1.0 / theta))))


def transition(theta: float, cells: int = CELLS) -> np.ndarray:
    """P(next U in cell b | this U in cell a) under the Gumbel copula ([cells, cells])."""
    edges = np.linspace(0.0, 1.0, cells + 1)
    c = gumbel_cdf(edges[:, None], edges[None, :], theta)
    c[0, :], c[:, 0] = 0.0, 0.0
    rect = np.clip(np.diff(np.diff(c, axis=0), axis=1), 0.0, None)
    return np.asarray(rect / rect.sum(axis=1, keepdims=True))


def gumbel_conditional_sample(u: np.ndarray, theta: float, rng: np.random.Generator) -> np.ndarray:
    """V given U = u under the Gumbel copula: the conditional CDF dC/du inverted by bisection."""
    target = rng.random(u.shape)
    lo, hi = np.zeros_like(u), np.ones_like(u)
    lu = -np.log(np.clip(u, 1e-300, 1.0))
    for _ in range(50):
        v = (lo + hi) / 2
        s = lu**theta + (-np.log(np.clip(v, 1e-300, 1.0))) ** theta
        h = np.exp(-(s ** (1.0 / theta))) * s ** (1.0 / theta - 1.0) * lu ** (theta - 1.0) / np.clip(u, 1e-300, 1)
        lo, hi = np.where(h < target, v, lo), np.where(h < target, hi, v)
    return np.asarray((lo + hi) / 2)


@dataclass(frozen=True)
class ChainModel:
    """One workload's fitted model: per model its calibrator, marginal, cell means and prices; per pair
    of models (in price order) the Gumbel parameter and the cell transition matrix."""

    calibrators: tuple[Calibrator, ...]
    marginals: tuple[Marginal, ...]
    means: np.ndarray  # [models, cells]
    thetas: dict[tuple[int, int], float]
    transitions: dict[tuple[int, int], np.ndarray]
    answer_usd: np.ndarray
    check_usd: np.ndarray

    @classmethod
    def fit(cls, z: np.ndarray, correct: np.ndarray, answer_usd: np.ndarray, check_usd: np.ndarray) -> ChainModel:
        """From transformed confidences ``z`` and correctness ([rows, models] each) and each model's mean
        answer and self-check prices."""
        models = z.shape[1]
        calibrators = tuple(Calibrator.fit(z[:, m], correct[:, m]) for m in range(models))
        x = np.stack([calibrators[m](z[:, m]) for m in range(models)], axis=1)
        marginals = tuple(Marginal.fit(x[:, m]) for m in range(models))
        thetas = {(i, j): gumbel_theta(x[:, i], x[:, j]) for i in range(models) for j in range(models) if i != j}
        return cls(
            calibrators,
            marginals,
            np.stack([mg.cell_means() for mg in marginals]),
            thetas,
            {pair: transition(theta) for pair, theta in thetas.items()},
            np.asarray(answer_usd, dtype=np.float64),
            np.asarray(check_usd, dtype=np.float64),
        )

    def calibrated(self, z: np.ndarray) -> np.ndarray:
        """Calibrated confidences X for transformed confidences ``z`` ([rows, models])."""
        return np.stack([c(z[:, m]) for m, c in enumerate(self.calibrators)], axis=1)

    def expected(self, chain: tuple[int, ...], s: np.ndarray) -> tuple[float, float]:
        """Expected correctness and cost (USD per question) of ``chain`` with keep-thresholds ``s`` on U
        (one per rung but the last); every rung but the last pays its self-check."""
        cells = self.means.shape[1]
        mass = np.full(cells, 1.0 / cells)
        correct = cost = 0.0
        for depth, m in enumerate(chain):
            if depth == len(chain) - 1:
                return correct + float(mass @ self.means[m]), cost + float(mass.sum()) * self.answer_usd[m]
            cost += float(mass.sum()) * (self.answer_usd[m] + self.check_usd[m])
            defer = np.clip(s[depth] * cells - np.arange(cells), 0.0, 1.0)
            correct += float((mass * (1.0 - defer)) @ self.means[m])
            mass = (mass * defer) @ self.transitions[(m, chain[depth + 1])]
        raise ValueError("a chain needs at least one model")

    def loss(self, chain: tuple[int, ...], s: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
        """Expected error + ``lam`` x expected cost, and its gradient in ``s`` (the cells make the loss
        piecewise linear; the gradient is that of the piece ``s`` lies on)."""
        cells = self.means.shape[1]
        masses, defers = [np.full(cells, 1.0 / cells)], []
        for depth, m in enumerate(chain[:-1]):
            defers.append(np.clip(s[depth] * cells - np.arange(cells), 0.0, 1.0))
            masses.append((masses[-1] * defers[-1]) @ self.transitions[(m, chain[depth + 1])])
        value = lam * self.answer_usd[chain[-1]] - self.means[chain[-1]]  # per unit of mass at each cell
        grad = np.zeros(len(chain) - 1)
        for depth in range(len(chain) - 2, -1, -1):
            m = chain[depth]
            ahead = self.transitions[(m, chain[depth + 1])] @ value
            c = min(int(s[depth] * cells), cells - 1)
            grad[depth] = masses[depth][c] * cells * (self.means[m][c] + ahead[c])
            value = lam * (self.answer_usd[m] + self.check_usd[m]) - (1 - defers[depth]) * self.means[m]
            value = value + defers[depth] * ahead
        return 1.0 + float(masses[0] @ value), grad

    def snap(self, chain: tuple[int, ...], s: np.ndarray) -> np.ndarray:
        """Thresholds moved off the point masses (a deterministic threshold keeps or defers a mass whole)."""
        out = np.asarray(s, dtype=np.float64).copy()
        for depth, m in enumerate(chain[:-1]):
            mg = self.marginals[m]
            if out[depth] < mg.p_low:
                out[depth] = 0.0 if out[depth] < mg.p_low / 2 else mg.p_low
            if out[depth] > 1.0 - mg.p_high:
                top = 1.0 - mg.p_high
                out[depth] = top if out[depth] < (1.0 + top) / 2 else 1.0
        return out

    def keep_at(self, chain: tuple[int, ...], s: np.ndarray) -> np.ndarray:
        """Snapped thresholds ``s`` as thresholds on X: a rung keeps its answer when X >= the value."""
        out = []
        for depth, m in enumerate(chain[:-1]):
            mg, u = self.marginals[m], float(s[depth])
            if u <= 0.0:
                out.append(-np.inf)
            elif u >= 1.0:
                out.append(np.inf)
            elif mg.p_low > 0 and u <= mg.p_low:
                out.append(float(np.nextafter(mg.low, np.inf)))
            else:
                out.append(float(mg.quantile(np.array([u]))[0]))
        return np.array(out)

    def sample(self, chain: tuple[int, ...], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` questions drawn from the model: X and correctness (~ Bernoulli(X)) per rung ([n, len(chain)])."""
        u = [rng.random(n)]
        for a, b in itertools.pairwise(chain):
            u.append(gumbel_conditional_sample(u[-1], self.thetas[(a, b)], rng))
        x = np.stack([self.marginals[m].quantile(ui) for m, ui in zip(chain, u, strict=True)], axis=1)
        return x, (rng.random(x.shape) < x).astype(np.float64)
