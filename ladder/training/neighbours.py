"""k-nearest-neighbour P(correct): the mean known label of the k most similar training questions."""

from __future__ import annotations

import numpy as np

BLOCK = 1024


def knn_scores(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    k: int = 40,
    temperature: float | None = None,
) -> np.ndarray:
    """Rows of ``test_x`` scored by cosine neighbours in ``train_x`` (both L2-normalised); NaN = unknown.

    With a ``temperature`` each neighbour weighs exp((similarity - best similarity) / temperature), so the
    score moves smoothly as an embedding moves, instead of jumping when a neighbour enters the top k.
    """
    k = min(k, len(train_x))
    out = np.zeros((len(test_x), train_y.shape[1]), dtype=np.float32)
    known = ~np.isnan(train_y)
    filled = np.nan_to_num(train_y)
    prior = np.nanmean(train_y, axis=0)
    for start in range(0, len(test_x), BLOCK):
        similarity = test_x[start : start + BLOCK] @ train_x.T
        nearest = np.argpartition(-similarity, kth=k - 1, axis=1)[:, :k]
        weights = np.ones(nearest.shape, dtype=np.float32)
        if temperature is not None:
            near = np.take_along_axis(similarity, nearest, axis=1)
            weights = np.exp((near - near.max(axis=1, keepdims=True)) / temperature)
        hits = (weights[:, :, None] * filled[nearest]).sum(axis=1)
        counts = (weights[:, :, None] * known[nearest]).sum(axis=1)
        out[start : start + BLOCK] = np.where(counts > 1e-9, hits / np.maximum(counts, 1e-9), prior)
    return out
