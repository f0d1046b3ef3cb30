"""The decision is a pure function of scores, costs and options, and explains itself."""

import numpy as np
import pytest

from ladder.core.errors import NoEligibleModelError, UnknownModelError
from ladder.core.policy import DecisionOptions, PolicyName, budget_tolerance, choose_batch, decide

P = {"small": 0.60, "medium": 0.70, "large": 0.74}
COST = {"small": 0.0001, "medium": 0.001, "large": 0.01}


def test_cheapest_within_tolerance_climbs_down_the_ladder() -> None:
    assert decide(P, COST, DecisionOptions(tolerance=0.0)).model == "large"
    assert decide(P, COST, DecisionOptions(tolerance=0.05)).model == "medium"
    assert decide(P, COST, DecisionOptions(tolerance=0.2)).model == "small"


def test_decision_explains_itself() -> None:
    decision = decide(P, COST, DecisionOptions(tolerance=0.05))
    assert decision.threshold == pytest.approx(0.69)
    assert {c.name for c in decision.candidates if c.within_threshold} == {"medium", "large"}
    assert "cheapest of 2 models" in decision.reason and "large" in decision.reason
    payload = decision.to_dict()
    assert payload["expected_cost_usd"] == COST["medium"]
    assert [c["name"] for c in payload["candidates"]] == ["small", "medium", "large"]  # type: ignore[union-attr]


def test_tolerance_zero_is_argmax() -> None:
    decision = decide(P, COST, DecisionOptions(tolerance=0.0))
    assert decision.policy is PolicyName.ARGMAX
    assert decision.model == "large"


def test_cost_ties_go_to_the_likelier_model() -> None:
    decision = decide({"a": 0.5, "b": 0.55}, {"a": 1.0, "b": 1.0}, DecisionOptions(tolerance=0.5))
    assert decision.model == "b"


def test_utility_trades_probability_for_cost() -> None:
    cheap = decide(P, COST, DecisionOptions(policy=PolicyName.UTILITY, cost_weight=10.0))
    rich = decide(P, COST, DecisionOptions(policy=PolicyName.UTILITY, cost_weight=0.0))
    assert (cheap.model, rich.model) == ("small", "large")


def test_allowed_subset_and_pinning() -> None:
    subset = decide(P, COST, DecisionOptions(tolerance=0.0, allowed=frozenset({"small", "medium"})))
    assert subset.model == "medium"
    assert not next(c for c in subset.candidates if c.name == "large").eligible
    pinned = decide(P, COST, DecisionOptions(pinned="small"))
    assert pinned.model == "small" and "pinned" in pinned.reason


def test_exclusions_and_errors() -> None:
    options = DecisionOptions(tolerance=0.0, excluded={"large": "no image input"})
    decision = decide(P, COST, options)
    assert decision.model == "medium"
    assert decision.fallback_order == ("medium", "small")
    everything = {n: "context window too small" for n in P}
    with pytest.raises(NoEligibleModelError, match="context window too small"):
        decide(P, COST, DecisionOptions(excluded=everything))
    with pytest.raises(UnknownModelError, match="'gpt-9'"):
        decide(P, COST, DecisionOptions(pinned="gpt-9"))


def test_batch_choice_matches_single_decisions() -> None:
    rng = np.random.default_rng(0)
    p = rng.random((200, 3)).astype(np.float32)
    costs = np.array(list(COST.values()))
    for tolerance in (0.0, 0.05, 0.3):
        batch = choose_batch(p, costs, tolerance)
        for row, chosen in zip(p, batch, strict=True):
            scores = dict(zip(COST, map(float, row), strict=True))
            assert list(COST)[chosen] == decide(scores, COST, DecisionOptions(tolerance=tolerance)).model


def test_budget_tolerance_keeps_mean_cost_under_target() -> None:
    rng = np.random.default_rng(1)
    p = rng.random((500, 3))
    costs = np.array(list(COST.values()))
    for budget in (0.0005, 0.002, 0.005):
        tolerance = budget_tolerance(p, costs, budget)
        chosen = choose_batch(p, costs, tolerance)
        assert costs[chosen].mean() <= budget
        if tolerance > 0:  # a smaller tolerance would have broken the budget
            assert costs[choose_batch(p, costs, tolerance - 0.005)].mean() > budget
