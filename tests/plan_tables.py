"""Calibrated plans with random weights on every feature they may read, for the plan tests."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from ladder.core.confidence_plan import SINGLE_FEATURES, CalibratedPlan, Logistic, PlanModel, set_name


def _logistic(rng: np.random.Generator, features: Sequence[str]) -> Logistic:
    return Logistic(intercept=float(rng.normal()), weights={f: float(rng.normal(scale=0.7)) for f in sorted(features)})


def random_plan(
    names: Sequence[str],
    seed: int,
    prices: Sequence[tuple[float, float]],
    self_check: Sequence[bool],
    cost_weight: float = 0.0,
    margin: float = 0.0,
    max_stages: int = 3,
) -> CalibratedPlan:
    """A plan over ``names`` ((answer, self-check) USD each) whose calibrators read every feature they may,
    with weights drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    models = tuple(
        PlanModel(
            name=n, answer_usd=a, self_check_usd=c, self_check=s, calibrator=_logistic(rng, list(SINGLE_FEATURES))
        )
        for n, (a, c), s in zip(names, prices, self_check, strict=True)
    )
    states: dict[str, dict[str, Logistic]] = {}
    if max_stages > 1:
        for size in range(1, min(max_stages, len(names)) + 1):
            for inside in itertools.combinations(names, size):
                features = [f"router:{n}" for n in names] + [f"p:{n}" for n in inside]
                features += [f"agree:{a}|{b}" for a, b in itertools.combinations(inside, 2)]
                states[set_name(inside)] = {n: _logistic(rng, features) for n in names}
    return CalibratedPlan(cost_weight=cost_weight, margin=margin, max_stages=max_stages, models=models, states=states)
