"""Cost per question and model: from a pool's prices when one is given, else from the data's cost_usd."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ladder.errors import DataError
from ladder.policy import expected_cost_usd
from ladder.pool import PoolConfig
from ladder.router import estimate_tokens
from training.dataset import RoutingData


def mean_output_tokens(data: RoutingData) -> dict[str, float]:
    """Mean output tokens per model where the data records them."""
    means: dict[str, float] = {}
    for j, model in enumerate(data.models):
        column = data.output_tokens[:, j]
        known = column[~np.isnan(column)]
        if len(known):
            means[model] = float(known.mean())
    return means


def cost_matrix(
    data: RoutingData, models: Sequence[str], pool: PoolConfig | None, labels: Sequence[str] | None = None
) -> np.ndarray:
    """USD per request, [questions, models]. ``labels`` maps pool models to data columns (default: names)."""
    labels = list(labels or models)
    column = {m: i for i, m in enumerate(data.models)}
    costs = np.zeros((len(data.questions), len(models)), dtype=np.float64)
    if pool is not None:
        tokens = np.array([estimate_tokens(q) for q in data.questions], dtype=np.float64)
        learned = mean_output_tokens(data)
        for j, (name, label) in enumerate(zip(models, labels, strict=True)):
            spec = pool.model(name)
            out = spec.expected_output_tokens or learned.get(label) or pool.routing.default_output_tokens
            costs[:, j] = [
                expected_cost_usd(int(t), out, spec.price.input_per_1m, spec.price.output_per_1m)
                for t in tokens
            ]
        return costs
    for j, label in enumerate(labels):
        values = data.costs[:, column[label]].astype(np.float64)
        known = ~np.isnan(values)
        if not known.any():
            raise DataError(
                f"the data has no cost_usd for model {label!r}; give a pool file (--pool) with its prices"
            )
        values[~known] = values[known].mean()
        costs[:, j] = values
    return costs
