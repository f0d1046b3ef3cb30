"""The plan settings the served-plan property tests draw: cost weight, margin, stages, self-checks paid."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

PLAN_SETTINGS: dict[str, st.SearchStrategy[Any]] = {
    "seed": st.integers(0, 2**16),
    "cost_weight": st.sampled_from([0.0, 300.0, 3000.0]),
    "margin": st.sampled_from([-0.05, 0.0, 0.1]),
    "max_stages": st.integers(1, 3),
    "self_check": st.lists(st.booleans(), min_size=3, max_size=3),
}
