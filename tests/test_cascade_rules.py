"""The cascade's rules in the core: answer agreement, mean token logprob, and the acceptance verdict."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladder.core.cascade import CascadeConfig, Signals, mean_logprob
from ladder.core.cascade_step import Action, AnswerState, StepRule, judge, step
from ladder.core.logprobs import TokenLogprob, token_logprobs

CONFIG = CascadeConfig(router_accept_p=0.9, min_mean_logprob=-0.5)


def test_mean_logprob_reads_openai_logprobs_and_skips_junk() -> None:
    content = [
        {"token": "4", "logprob": -0.2},
        {"token": "2", "logprob": -0.4},
        {"token": "x", "logprob": None},
    ]
    assert mean_logprob(token_logprobs({"content": content})) == pytest.approx(-0.3)
    assert mean_logprob(token_logprobs(None)) is None
    assert mean_logprob(token_logprobs({"content": None})) is None
    assert mean_logprob(token_logprobs({"content": [{"logprob": True}, {"logprob": float("-inf")}]})) is None
    assert mean_logprob([TokenLogprob("a", float("-inf")), TokenLogprob("b", -1.0)]) == -1.0
    assert mean_logprob(()) is None


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(),
        lambda s: st.lists(s) | st.dictionaries(st.text(), s),
    )
)
def test_mean_logprob_never_raises(value: Any) -> None:
    result = mean_logprob(token_logprobs({"content": value}))
    assert result is None or math.isfinite(result)


def test_the_router_vouching_keeps_an_unread_answer() -> None:
    verdict = judge(Signals(router_p=0.95, mean_logprob=-5.0), CONFIG, last=False, asked=False)
    assert verdict.accepted and "router P(correct) 0.950 >= 0.9" in verdict.reason


def test_every_available_signal_must_pass() -> None:
    assert judge(Signals(0.5, mean_logprob=-0.1), CONFIG, False, False).accepted
    assert not judge(Signals(0.5, mean_logprob=-0.1, agrees=False), CONFIG, False, True).accepted
    assert judge(Signals(0.5, mean_logprob=None, agrees=True), CONFIG, False, True).accepted
    low = judge(Signals(0.5, mean_logprob=-2.0), CONFIG, False, False)
    assert not low.accepted and "mean logprob -2.000 < -0.5" in low.reason


def test_no_signal_escalates_unless_nothing_is_left() -> None:
    assert not judge(Signals(0.5), CONFIG, last=False, asked=False).accepted
    kept = judge(Signals(0.5), CONFIG, last=True, asked=False)
    assert kept.accepted and "no likelier model is left" in kept.reason


def test_the_band_keeps_or_escalates_unread_and_asks_inside_it_once() -> None:
    band = CascadeConfig(unsure_gap=(-0.3, -0.1), router_accept_p=1.0, logprobs=False)
    assert judge(Signals(0.5, router_gap=-0.05), band, False, False).reason.endswith(">= -0.1: kept unread")
    below = judge(Signals(0.5, router_gap=-0.4), band, False, False)
    assert below.action is Action.ESCALATE and below.reason.endswith("< -0.3: escalated unread")
    assert judge(Signals(0.5, router_gap=-0.2), band, False, False).action is Action.ASK
    assert judge(Signals(0.5, router_gap=-0.2, agrees=True), band, False, True).accepted
    assert judge(Signals(0.5, router_gap=-0.2), band, False, True).action is Action.ESCALATE  # none came
    assert judge(Signals(0.5, router_gap=-0.4), band, True, False).accepted  # the last rung keeps


def test_a_step_over_arrays_is_the_one_answer_judgement_row_by_row() -> None:
    rng = np.random.default_rng(0)
    n = 400
    gaps = rng.uniform(-0.6, 0.1, n)
    agrees = rng.choice([0.0, 1.0, np.nan], n)
    asked = rng.random(n) < 0.5
    last = rng.random(n) < 0.2
    p = rng.uniform(0.3, 1.0, n)
    config = CascadeConfig(unsure_gap=(-0.3, -0.1), router_accept_p=0.95)
    state = AnswerState(last, p, gaps, np.full(n, np.nan), asked, agrees)
    actions = step(state, StepRule.of(config)).action
    for i in range(n):
        signals = Signals(float(p[i]), None, None if np.isnan(agrees[i]) else bool(agrees[i]), float(gaps[i]))
        one = judge(signals, config, bool(last[i]), bool(asked[i]))
        assert actions[i] == one.action
