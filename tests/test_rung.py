"""The calibrated cascade's step rule (`ladder.core.rung`), and the offline player that drives it."""

from __future__ import annotations

import numpy as np
import pytest

from ladder.core.rung import KEEP, RungSettings, next_asks, step
from ladder.training.confidence import Side
from ladder.training.confidence_plans import Chain, frontier, play, play_chains
from ladder.training.dataset import RoutingData
from tests.cascade_tables import two_questions

Q = [0.5, 0.7, 0.9]
COST = [0.001, 0.01, 0.1]


def test_first_rung_is_the_router_at_that_cost_weight() -> None:
    assert step(None, Q, COST, [False] * 3, RungSettings(0.0)).model == 2  # price ignored: the likeliest
    assert step(None, Q, COST, [False] * 3, RungSettings(10.0)).model == 1  # 0.7 - 0.1 beats 0.9 - 1.0
    assert step(None, Q, COST, [False] * 3, RungSettings(100.0)).model == 0


def test_escalates_only_past_the_answer_in_hand_plus_margin() -> None:
    asked = [True, False, False]
    kept = step(0.85, Q, COST, asked, RungSettings(0.0))
    assert (kept.action, kept.model) == ("ask", 2)  # 0.9 > 0.85
    assert "0.850" in kept.reason
    assert step(0.85, Q, COST, asked, RungSettings(0.0, margin=0.1)).action == "keep"
    assert step(0.3, Q, COST, asked, RungSettings(1.0)).model == 2  # 0.9 - 0.1 beats 0.7 - 0.01
    assert step(0.3, Q, COST, asked, RungSettings(0.0, max_stages=1)).action == "keep"


def test_never_asks_a_model_twice_and_keeps_when_none_is_left() -> None:
    choice = next_asks(
        np.array([0.0]), np.array([Q]), np.array([COST]), np.array([[True, True, True]]), RungSettings(0.0)
    )
    assert choice.tolist() == [KEEP]
    rows = next_asks(
        np.array([np.nan, 0.2]),
        np.array([Q, Q]),
        np.array([COST, COST]),
        np.array([[False, False, False], [False, False, True]]),
        RungSettings(0.0),
    )
    assert rows.tolist() == [2, 1]


def _table() -> RoutingData:
    """Two questions, three models: the cheap one is right on the first only."""
    return two_questions(
        [[1, 0, 1], [0, 1, 1]],
        answers=[["x", "y", "x"], ["y", "x", "x"]],
        confidence_kinds=[["self_check_logprob"] * 3] * 2,
        confidence_costs=[[5e-4, 5e-3, 5e-2]] * 2,
    )


def test_play_pays_each_answer_and_each_self_check_it_read() -> None:
    data = _table()
    # prefill: start on the small model; calibrated: small is sure on "a", unsure on "b"; after small,
    # the mid model looks likely right
    prefill = np.array([[0.9, 0.6, 0.95]] * 2)
    calibrated = np.array([[0.95, 0.3, 0.99], [0.2, 0.9, 0.99]])
    after = np.zeros((2, 3, 3))
    after[:, 0, :] = [0.0, 0.8, 0.9]
    after[:, 1, :] = [0.0, 0.0, 0.9]
    side = Side(prefill, calibrated, after)
    expected = (np.array([[1e-3, 1e-2, 1e-1]] * 2), np.array([[5e-4, 5e-3, 5e-2]] * 2))
    out = play(data, side, expected, [RungSettings(3.0, margin=0.0, max_stages=3)])
    # "a": small asked (0.9 - 0.003 is best), read (0.95), kept. "b": small read (0.2) -> mid (0.8 - 0.03)
    # read (0.9: big's 0.9 - 0.3 does not beat it), kept
    assert out.correct.tolist() == [[1.0, 1.0]]
    assert out.calls.tolist() == [[1.0, 2.0]]
    np.testing.assert_allclose(out.cost, [[1e-3 + 5e-4, 1e-3 + 5e-4 + 1e-2 + 5e-3]])
    np.testing.assert_allclose(out.latency_ms, [[100, 300]])
    # the router alone (one stage): its answer is never read, no self-check is paid
    alone = play(data, side, expected, [RungSettings(3.0, max_stages=1)])
    np.testing.assert_allclose(alone.cost, [[1e-3, 1e-3]])
    assert alone.correct.tolist() == [[1.0, 0.0]]


def test_chains_keep_at_their_threshold_and_pay_the_checks_of_the_rungs_they_read() -> None:
    data = _table()
    out = play_chains(data, [Chain((0, 2), (-0.5,)), Chain((0, 1, 2), (-5.0, -1.0))])
    assert out.correct.tolist() == [[1.0, 1.0], [1.0, 0.0]]
    np.testing.assert_allclose(out.cost[0], [1e-3 + 5e-4, 1e-3 + 5e-4 + 1e-1], rtol=1e-6)
    np.testing.assert_allclose(out.calls[1], [1, 1])


def test_frontier_drops_what_a_cheaper_setting_matches() -> None:
    from ladder.training.confidence_plans import Outcomes

    correct = np.array([[1, 0], [1, 1], [1, 0], [1, 1]], dtype=float)
    cost = np.array([[1, 1], [5, 5], [2, 2], [9, 9]], dtype=float)
    zeros = np.zeros_like(cost)
    assert frontier(Outcomes(correct, cost, zeros, zeros)) == [0, 1]


@pytest.mark.parametrize("weight", [0.0, 50.0])
def test_step_and_next_asks_agree(weight: float) -> None:
    rng = np.random.default_rng(int(weight))
    q, cost = rng.uniform(size=(50, 4)), rng.uniform(0, 0.01, size=(50, 4))
    asked = rng.uniform(size=(50, 4)) < 0.3
    p_keep = np.where(asked.any(axis=1), rng.uniform(size=50), np.nan)
    settings = RungSettings(weight, margin=0.05, max_stages=3)
    batch = next_asks(p_keep, q, cost, asked, settings)
    for i in range(50):
        one = step(
            None if np.isnan(p_keep[i]) else float(p_keep[i]),
            q[i].tolist(),
            cost[i].tolist(),
            asked[i].tolist(),
            settings,
        )
        assert (KEEP if one.model is None else one.model) == batch[i]
