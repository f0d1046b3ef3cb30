"""Cost per question and model: from a pool's prices when one is given, else from the data's cost_usd."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ladder.core.errors import DataError, DataWarning
from ladder.core.pool import PoolConfig
from ladder.core.pricing import Pricing, estimate_tokens
from ladder.training.dataset import RoutingData


def mean_output_tokens(data: RoutingData) -> dict[str, float]:
    """Mean output tokens per model where the data records them."""
    means: dict[str, float] = {}
    for j, model in enumerate(data.models):
        column = data.output_tokens[:, j]
        known = column[~np.isnan(column)]
        if len(known):
            means[model] = float(known.mean())
    return means


def learned_output_tokens(
    data: RoutingData, models: Sequence[str], labels: Sequence[str], pool: PoolConfig
) -> dict[str, float]:
    """The data's mean output tokens keyed by each pool model's checkpoint label, as a manifest holds them."""
    means = mean_output_tokens(data)
    return {
        pool.model(name).checkpoint_label: means[label]
        for name, label in zip(models, labels, strict=True)
        if label in means
    }


def cost_matrix(
    data: RoutingData, models: Sequence[str], pool: PoolConfig | None, labels: Sequence[str] | None = None
) -> np.ndarray:
    """USD per request, [questions, models]. ``labels`` maps pool models to data columns (default: names)."""
    labels = list(labels or models)
    column = {m: i for i, m in enumerate(data.models)}
    costs = np.zeros((len(data.questions), len(models)), dtype=np.float64)
    if pool is not None:
        tokens = np.array([estimate_tokens(q) for q in data.questions], dtype=np.float64)
        # the output tokens the checkpoint will learn (train.py stores the same means in the manifest)
        pricing = Pricing(pool, learned_output_tokens(data, models, labels, pool))
        for j, name in enumerate(models):
            spec = pool.model(name)
            costs[:, j] = [pricing.expected_cost(spec, t) for t in tokens]
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


EQUAL_COSTS = "equal: no pool file and no cost_usd in the data, so routed on accuracy alone"


def training_costs(
    data: RoutingData, names: Sequence[str], pool: PoolConfig | None, labels_used: Sequence[str]
) -> tuple[np.ndarray, str]:
    """USD per question and model, and where it came from; equal costs (with a warning) when none exist."""
    if pool is not None:
        return cost_matrix(data, names, pool, labels_used), "pool prices"
    columns = [data.models.index(label) for label in labels_used]
    if np.isnan(data.costs[:, columns]).all():
        warnings.warn(
            "the data has no cost_usd and no pool file was given: every model costs the same, so the "
            "router ranks on P(correct) alone (give --pool with prices to route on cost)",
            DataWarning,
            stacklevel=3,
        )
        return np.ones((len(data.questions), len(names))), EQUAL_COSTS
    return cost_matrix(data, names, pool, labels_used), "cost_usd in the data"
