"""The decision is a pure function of scores, costs and options, and explains itself."""

import numpy as np
import pytest

from ladder.core.errors import NoEligibleModelError, UnknownModelError
from ladder.core.policy import (
    ChoiceOptions,
    DecisionOptions,
    PolicyName,
    budget_tolerance,
    choose,
    decide,
    likeliest,
)

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
        batch = choose(p, costs, ChoiceOptions(tolerance=tolerance)).model
        for row, chosen in zip(p, batch, strict=True):
            scores = dict(zip(COST, map(float, row), strict=True))
            assert list(COST)[chosen] == decide(scores, COST, DecisionOptions(tolerance=tolerance)).model


def test_budget_tolerance_keeps_mean_cost_under_target() -> None:
    rng = np.random.default_rng(1)
    p = rng.random((500, 3))
    costs = np.array(list(COST.values()))
    for budget in (0.0005, 0.002, 0.005):
        tolerance = budget_tolerance(p, costs, budget)
        chosen = choose(p, costs, ChoiceOptions(tolerance=tolerance)).model
        assert costs[chosen].mean() <= budget
        if tolerance > 0:  # a smaller tolerance would have broken the budget
            assert costs[choose(p, costs, ChoiceOptions(tolerance=tolerance - 0.005)).model].mean() > budget


def test_ties_go_to_the_cheaper_then_the_likelier_then_the_first_listed_model() -> None:
    # within the tolerance all three; "b" and "c" cost the same, "c" is likelier
    p = np.array([[0.70, 0.60, 0.65], [0.70, 0.65, 0.65]])
    costs = np.array([2.0, 1.0, 1.0])
    np.testing.assert_array_equal(choose(p, costs, ChoiceOptions(tolerance=0.2)).model, [2, 1])
    # equal utility: the cheaper model, and between equal price and P the first listed
    flat = np.array([[0.5, 0.5, 0.5]])
    assert choose(flat, np.array([3.0, 1.0, 1.0]), ChoiceOptions(PolicyName.UTILITY, cost_weight=0.0)).model[0] == 1
    # equally likely: the cheaper one; then the first listed
    assert likeliest(np.array([[0.8, 0.8, 0.8]]), np.array([2.0, 1.0, 1.0]))[0] == 1
    by_name = decide({"z": 0.5, "a": 0.5}, {"z": 1.0, "a": 1.0}, DecisionOptions(tolerance=0.1))
    assert by_name.model == "z"  # pool order, not the alphabet


def test_the_eligibility_mask_is_per_request() -> None:
    p = np.array([[0.60, 0.70, 0.74], [0.60, 0.70, 0.74]])
    costs = np.array(list(COST.values()))
    mask = np.array([[True, True, True], [True, True, False]])
    choices = choose(p, costs, ChoiceOptions(tolerance=0.0), mask)
    np.testing.assert_array_equal(choices.model, [2, 1])
    np.testing.assert_allclose(choices.threshold, [0.74, 0.70])
    np.testing.assert_array_equal(choices.within, [[False, False, True], [False, True, False]])
    with pytest.raises(NoEligibleModelError, match=r"row\(s\) \[1\]"):
        choose(p, costs, ChoiceOptions(), np.array([[True, False, False], [False, False, False]]))


def test_a_decision_is_a_one_row_choice() -> None:
    rng = np.random.default_rng(2)
    names = list(COST)
    for row in rng.random((100, 3)):
        for options in (DecisionOptions(tolerance=0.1), DecisionOptions(policy=PolicyName.UTILITY, cost_weight=1.0)):
            scores = dict(zip(names, map(float, row), strict=True))
            excluded = {"large": "no image input"} if row[0] > 0.5 else {}
            decision = decide(
                scores, COST, DecisionOptions(options.policy, options.tolerance, options.cost_weight, excluded=excluded)
            )
            mask = np.array([n not in excluded for n in names])
            chosen = choose(row[None, :], np.array(list(COST.values())), options.choice(), mask).model[0]
            assert decision.model == names[chosen]
