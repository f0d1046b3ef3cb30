"""A new model's P(correct) from a small labelled sample: logistic regression on the fixed head's outputs.

The features of a question are the trained head's logits for every pool model (how hard the question is
and which of the known models get it right) and, optionally, a few principal components of its embedding
(its subject). A regularised logistic regression maps them to the new model's P(correct). Its strength is
chosen by an inner cross-validation, and the reported metrics come from an outer one: every label is
predicted by a fit that never saw it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ladder.training.pca import principal_axes

STRENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
"""Inverse L2 strengths (sklearn's C) tried by the inner cross-validation, on standardised features."""


@dataclass(frozen=True)
class OnboardSettings:
    folds: int = 5
    pca_dims: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class LinearPart:
    """The fitted new-model column: features standardised, then a logistic regression."""

    pca_mean: np.ndarray  # [dim]
    pca_basis: np.ndarray  # [dim, pca_dims]
    feature_mean: np.ndarray  # [features]
    feature_std: np.ndarray  # [features]
    weights: np.ndarray  # [features]
    bias: float
    strength: float

    def predict(self, embedding: np.ndarray, base_p: np.ndarray) -> np.ndarray:
        f = (
            features(embedding, base_p, self.pca_mean, self.pca_basis) - self.feature_mean
        ) / self.feature_std
        return _sigmoid(f @ self.weights + self.bias)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.asarray(np.log(p) - np.log1p(-p))


def features(embedding: np.ndarray, base_p: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return np.concatenate([logit(base_p), (embedding - mean) @ basis], axis=1)


def _pca(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    dims = min(dims, len(x) - 1, x.shape[1])
    if dims <= 0:
        return x.mean(axis=0).astype(np.float32), np.zeros((x.shape[1], 0), dtype=np.float32)
    mean, axes, _ = principal_axes(x, dims)
    return mean.astype(np.float32), axes.astype(np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-np.clip(z, -30, 30))))


def _fit_lr(f: np.ndarray, y: np.ndarray, strength: float) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method: minimises the sum of log losses plus
    ||w||^2 / (2 * strength), the bias unpenalised (sklearn's convention for C). Graded labels are soft
    targets."""
    x1 = np.concatenate([f, np.ones((len(f), 1))], axis=1)
    penalty = np.full(x1.shape[1], 1 / strength)
    penalty[-1] = 0.0
    beta = np.zeros(x1.shape[1])
    for _ in range(50):
        p = _sigmoid(x1 @ beta)
        gradient = x1.T @ (p - y) + penalty * beta
        hessian = (x1 * (p * (1 - p))[:, None]).T @ x1 + np.diag(penalty) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def _folds(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified fold index per row (graded labels stratified at 0.5)."""
    folds = np.zeros(len(y), dtype=int)
    for cls in (False, True):
        rows = np.nonzero((y >= 0.5) == cls)[0]
        folds[rng.permutation(rows)] = np.arange(len(rows)) % k
    return folds


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def _standardise(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return f.mean(axis=0), np.maximum(f.std(axis=0), 1e-6)


def _choose_strength(f: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> float:
    folds = _folds(y, k, rng)
    losses = []
    for strength in STRENGTHS:
        p = np.zeros(len(y))
        for fold in range(k):
            fit, held = folds != fold, folds == fold
            mean, std = _standardise(f[fit])
            weights, bias = _fit_lr((f[fit] - mean) / std, y[fit], strength)
            p[held] = _sigmoid((f[held] - mean) / std @ weights + bias)
        losses.append(_log_loss(p, y))
    return STRENGTHS[int(np.argmin(losses))]


def _fit_part(
    f: np.ndarray, y: np.ndarray, pca: tuple[np.ndarray, np.ndarray], settings: OnboardSettings, seed: int
) -> LinearPart:
    strength = _choose_strength(f, y, max(2, settings.folds - 1), np.random.default_rng(seed))
    f_mean, f_std = _standardise(f)
    weights, bias = _fit_lr((f - f_mean) / f_std, y, strength)
    return LinearPart(
        pca_mean=pca[0],
        pca_basis=pca[1],
        feature_mean=f_mean.astype(np.float32),
        feature_std=f_std.astype(np.float32),
        weights=weights.astype(np.float32),
        bias=bias,
        strength=strength,
    )


def fit_new_model(
    x: np.ndarray, base_p: np.ndarray, y: np.ndarray, settings: OnboardSettings
) -> tuple[LinearPart, np.ndarray]:
    """The fitted part on every label, and honest out-of-fold P(correct) for each label (nested CV).

    The principal components are taken once from the whole sample's embeddings (no labels involved).
    """
    pca = _pca(x, settings.pca_dims)
    f = features(x, base_p, *pca)
    folds = _folds(y, settings.folds, np.random.default_rng(settings.seed))
    oof = np.zeros(len(y))
    for fold in range(settings.folds):
        fit, held = folds != fold, folds == fold
        part = _fit_part(f[fit], y[fit], pca, settings, settings.seed * 100 + fold + 1)
        oof[held] = part.predict(x[held], base_p[held])
    return _fit_part(f, y, pca, settings, settings.seed * 100), oof


class NewModelColumn(nn.Module):
    """(embedding, the base head's p_correct) -> p_correct with the new model's column appended."""

    pca_mean: torch.Tensor
    pca_basis: torch.Tensor
    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    weights: torch.Tensor
    bias: torch.Tensor

    def __init__(self, part: LinearPart) -> None:
        super().__init__()
        for name in ("pca_mean", "pca_basis", "feature_mean", "feature_std", "weights"):
            self.register_buffer(name, torch.as_tensor(getattr(part, name), dtype=torch.float32))
        self.register_buffer("bias", torch.tensor([part.bias], dtype=torch.float32))
        self.use_pca = part.pca_basis.shape[1] > 0

    def forward(self, embedding: torch.Tensor, base_p: torch.Tensor) -> torch.Tensor:
        p = base_p.clamp(1e-4, 1 - 1e-4)
        f = torch.log(p) - torch.log1p(-p)
        if self.use_pca:
            f = torch.cat([f, (embedding - self.pca_mean) @ self.pca_basis], dim=1)
        z = ((f - self.feature_mean) / self.feature_std) @ self.weights.unsqueeze(1) + self.bias
        return torch.cat([base_p, torch.sigmoid(z)], dim=1)
