"""The shared PCA: orthonormal axes ordered by spread, as many as the rows and columns allow."""

from __future__ import annotations

import numpy as np

from ladder.training.pca import principal_axes


def test_axes_are_orthonormal_and_ordered_by_spread() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6)) * np.array([10.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    mean, axes, singular = principal_axes(x, 3)
    assert np.allclose(mean, x.mean(axis=0))
    assert axes.shape == (6, 3) and np.allclose(axes.T @ axes, np.eye(3))
    assert np.all(np.diff(singular) <= 0)
    assert np.allclose(np.abs(axes[:, 0]), np.eye(6)[0], atol=0.05)  # the widest column comes first
    assert np.allclose(np.linalg.norm((x - mean) @ axes, axis=0), singular)


def test_dims_past_the_data_are_cut_to_what_it_has() -> None:
    x = np.random.default_rng(1).normal(size=(4, 10))
    assert principal_axes(x, 64).axes.shape == (10, 4)
    assert principal_axes(x, 0).axes.shape == (10, 0)
