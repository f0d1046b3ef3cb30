"""Expected latency per model: learning from measured calls, live updates, and the budget exclusion."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from ladder.core.latency import LatencyProfile, LatencySample, LatencyTracker, profile_from_samples


def test_profile_is_the_median_of_measured_calls() -> None:
    samples = [
        LatencySample(total_s=1.0 + i, ttft_s=0.2, output_tokens=int(80 * (1.0 + i - 0.2))) for i in range(3)
    ]
    samples.append(LatencySample(total_s=60.0, ttft_s=30.0, output_tokens=10))  # one stall
    profile = profile_from_samples(samples)
    assert profile is not None
    assert math.isclose(profile.ttft_s, 0.2)
    assert 70 < profile.tokens_per_s < 90


def test_without_a_first_token_time_the_whole_call_counts() -> None:
    profile = profile_from_samples([LatencySample(2.0, None, 100), LatencySample(4.0, None, 100)])
    assert profile == LatencyProfile(3.0, float("inf"))
    assert profile.expected_ms(500) == 3000.0
    assert profile_from_samples([]) is None


def test_budget_excludes_slow_models_and_keeps_unknown_ones() -> None:
    tracker = LatencyTracker({"fast": LatencyProfile(0.1, 100.0), "slow": LatencyProfile(2.0, 20.0)})
    excluded = tracker.exclusions({"fast": 100, "slow": 100, "unknown": 100}, budget_ms=2000)
    assert set(excluded) == {"slow"}
    assert "7000 ms" in excluded["slow"] and "2000 ms" in excluded["slow"]
    assert tracker.exclusions({"fast": 100, "slow": 100}, budget_ms=10_000) == {}


def test_live_calls_move_the_estimate_towards_what_was_measured() -> None:
    tracker = LatencyTracker({"m": LatencyProfile(0.1, 100.0)}, alpha=0.5)
    for _ in range(6):
        tracker.observe("m", LatencySample(total_s=5.0, ttft_s=3.0, output_tokens=40))
    profile = tracker.profile("m")
    assert profile is not None
    assert 2.8 < profile.ttft_s < 3.0
    assert 20 < profile.tokens_per_s < 25
    assert tracker.exclusions({"m": 40}, budget_ms=1000)


@given(
    st.lists(st.tuples(st.floats(0.001, 100), st.floats(0, 1), st.integers(0, 5000)), min_size=1, max_size=30)
)
def test_estimates_are_finite_positive_whatever_is_measured(calls: list[tuple[float, float, int]]) -> None:
    tracker = LatencyTracker()
    for total, share, tokens in calls:
        profile = tracker.observe("m", LatencySample(total, total * share, tokens))
        assert profile.ttft_s >= 0
        assert profile.tokens_per_s > 0
        assert profile.expected_ms(100) >= 0
