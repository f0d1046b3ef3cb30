"""Fit the head: PCA, a cross-validated MLP ensemble on masked labels, and Platt calibration per model.

The ensemble's members are the folds of a K-fold split: member k never sees fold k, so its predictions on
fold k are honest out-of-fold scores. Calibration, the recommended operating point and every training-time
metric are computed from those out-of-fold scores, never from predictions on rows a member was fitted on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ladder.training.head_model import MLP, NeighbourVote, RouterHead
from ladder.training.neighbours import knn_scores
from ladder.training.pca import principal_axes

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class HeadSettings:
    pca_dims: int = 64
    vote_dims: int = 32
    vote_neighbours: int = 80
    vote_temperature: float = 0.05
    vote_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    hidden: int = 256
    dropout: float = 0.2
    members: int = 5
    max_epochs: int = 80
    patience: int = 8
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-2
    seed: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class FittedHead:
    head: RouterHead
    oof_p: np.ndarray  # calibrated out-of-fold P(correct), [questions, models]
    folds: np.ndarray  # fold index per question
    vote_weight: float


def _pca(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and whitened projection (dim x k) from the top principal components."""
    mean, axes, singular = principal_axes(x, min(dims, len(x) - 1))
    std = singular / np.sqrt(max(len(x) - 1, 1))
    components = axes / np.maximum(std, 1e-8)
    return mean.astype(np.float32), components.astype(np.float32)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    loss = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def _train_member(
    x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, settings: HeadSettings, seed: int
) -> MLP:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    n_val = max(1, len(x) // 10)
    val, fit = order[:n_val], order[n_val:]
    member = MLP(x.shape[1], settings.hidden, y.shape[1], settings.dropout)
    optimiser = torch.optim.AdamW(
        member.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    best_loss, best_state, stale = float("inf"), None, 0
    for _ in range(settings.max_epochs):
        member.train()
        shuffled = fit[torch.randperm(len(fit), generator=generator)]
        for start in range(0, len(shuffled), settings.batch_size):
            batch = shuffled[start : start + settings.batch_size]
            optimiser.zero_grad()
            masked_bce(member(x[batch]), y[batch], m[batch]).backward()
            optimiser.step()
        member.eval()
        with torch.no_grad():
            loss = float(masked_bce(member(x[val]), y[val], m[val]))
        if loss < best_loss - 1e-5:
            best_loss, stale = loss, 0
            best_state = {k: v.clone() for k, v in member.state_dict().items()}
        else:
            stale += 1
            if stale >= settings.patience:
                break
    if best_state is not None:
        member.load_state_dict(best_state)
    member.eval()
    return member


def fit_platt(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-model scale and bias on out-of-fold logits, minimising masked log loss."""
    z = torch.as_tensor(logits, dtype=torch.float32)
    y = torch.as_tensor(np.nan_to_num(labels), dtype=torch.float32)
    w = torch.as_tensor(mask, dtype=torch.float32)
    scale = torch.ones(z.shape[1], requires_grad=True)
    bias = torch.zeros(z.shape[1], requires_grad=True)
    optimiser = torch.optim.LBFGS([scale, bias], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = masked_bce(z * scale + bias, y, w)
        loss.backward()
        return loss

    optimiser.step(closure)
    return scale.detach().numpy(), bias.detach().numpy()


def fit_head(
    embeddings: np.ndarray,
    labels: np.ndarray,
    settings: HeadSettings,
    progress: Progress | None = None,
) -> FittedHead:
    """Train on ``embeddings`` [q, dim] and ``labels`` [q, models] (NaN = unknown, graded allowed)."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(settings.seed)
    mask = ~np.isnan(labels)
    mean, components = _pca(embeddings, settings.pca_dims)
    reduced = torch.as_tensor((embeddings - mean) @ components, dtype=torch.float32)
    y = torch.as_tensor(np.nan_to_num(labels), dtype=torch.float32)
    m = torch.as_tensor(mask, dtype=torch.float32)
    folds = rng.permutation(np.arange(len(labels)) % settings.members)
    oof_logits = np.zeros(labels.shape, dtype=np.float32)
    members = []
    for k in range(settings.members):
        if progress:
            progress("ensemble members trained (cross-validation folds)", k, settings.members)
        train = torch.as_tensor(np.nonzero(folds != k)[0])
        held = torch.as_tensor(np.nonzero(folds == k)[0])
        member = _train_member(reduced[train], y[train], m[train], settings, settings.seed * 1000 + k)
        with torch.no_grad():
            oof_logits[held.numpy()] = member(reduced[held]).numpy()
        members.append(member)
    if progress:
        progress("ensemble members trained (cross-validation folds)", settings.members, settings.members)
    mlp_p = 1 / (1 + np.exp(-oof_logits))
    vote_mean, vote_basis, vote_bank = _vote_space(embeddings, settings.vote_dims)
    vote_p = np.zeros_like(mlp_p)
    for k in range(settings.members):
        held = folds == k
        vote_p[held] = knn_scores(
            vote_bank[~held],
            labels[~held],
            vote_bank[held],
            settings.vote_neighbours,
            settings.vote_temperature,
        )
    stage = "blend weights tried (MLP and neighbour vote)"
    if progress:
        progress(stage, 0, len(settings.vote_weights))
    weight, scale, bias, blend_logits = _best_blend(mlp_p, vote_p, labels, mask, settings.vote_weights)
    if progress:
        progress(stage, len(settings.vote_weights), len(settings.vote_weights))
    oof_p = 1 / (1 + np.exp(-(blend_logits * scale + bias)))
    vote = NeighbourVote(
        vote_mean,
        vote_basis,
        vote_bank,
        labels,
        np.nanmean(labels, axis=0),
        settings.vote_neighbours,
        settings.vote_temperature,
    )
    head = RouterHead(mean, components, members, scale, bias, vote=vote, vote_weight=weight)
    return FittedHead(head=head, oof_p=oof_p.astype(np.float32), folds=folds, vote_weight=weight)


def _vote_space(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, unwhitened PCA basis, and the L2-normalised training bank in that space."""
    mean, basis, _ = principal_axes(x, dims)
    bank = (x - mean) @ basis
    bank /= np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-8)
    return mean.astype(np.float32), basis.astype(np.float32), bank.astype(np.float32)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.asarray(np.log(p) - np.log1p(-p))


def _best_blend(
    mlp_p: np.ndarray, vote_p: np.ndarray, labels: np.ndarray, mask: np.ndarray, weights: tuple[float, ...]
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The blend weight (and its Platt calibration) with the lowest out-of-fold log loss."""
    best: tuple[float, float, np.ndarray, np.ndarray, np.ndarray] | None = None
    y = np.nan_to_num(labels)
    for weight in weights:
        logits = _logit(weight * vote_p + (1 - weight) * mlp_p)
        scale, bias = fit_platt(logits, labels, mask)
        p = np.clip(1 / (1 + np.exp(-(logits * scale + bias))), 1e-7, 1 - 1e-7)
        loss = float(-(mask * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / mask.sum())
        if best is None or loss < best[0] - 1e-6:
            best = (loss, weight, scale, bias, logits)
    assert best is not None
    return best[1], best[2], best[3], best[4]
