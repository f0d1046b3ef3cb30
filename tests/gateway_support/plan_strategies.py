"""The served plans the property tests draw: random cost weight, margin, stages and self-checks paid."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from ladder.core.confidence_plan import CalibratedPlan
from tests.plan_tables import random_plan


def served_plans(names: Sequence[str], prices: Sequence[tuple[float, float]]) -> st.SearchStrategy[CalibratedPlan]:
    """Random plans over ``names`` with ``prices`` (answer, self-check) per model, as `random_plan` builds them."""
    return st.builds(
        lambda seed, self_check, cost_weight, margin, max_stages: random_plan(
            names, seed, prices, self_check, cost_weight, margin, max_stages
        ),
        seed=st.integers(0, 2**16),
        self_check=st.lists(st.booleans(), min_size=3, max_size=3),
        cost_weight=st.sampled_from([0.0, 300.0, 3000.0]),
        margin=st.sampled_from([-0.05, 0.0, 0.1]),
        max_stages=st.integers(1, 3),
    )
