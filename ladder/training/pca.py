"""Principal axes of a set of rows, by SVD: the one PCA the head, the cascades and onboarding project with."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PrincipalAxes(NamedTuple):
    mean: np.ndarray  # [features], the rows' mean
    axes: np.ndarray  # [features, k], the top k principal axes as columns: project with (x - mean) @ axes
    singular: np.ndarray  # [k], their singular values (spread along each axis times sqrt(rows - 1))


def principal_axes(x: np.ndarray, dims: int) -> PrincipalAxes:
    """The mean of ``x`` and its top ``dims`` principal axes (fewer where ``x`` has fewer rows or columns)."""
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    dims = min(dims, vt.shape[0])
    return PrincipalAxes(mean, vt[:dims].T, singular[:dims])
