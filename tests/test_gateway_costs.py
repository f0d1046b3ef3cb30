"""Costs and the circuit breaker, as pure functions of their inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladder.core.errors import ConfigError
from ladder.core.pool import load_pool
from ladder.core.pricing import Pricing, Usage
from ladder.gateway.breaker import CircuitBreaker
from ladder.gateway.costs import answer_cost, baseline_model

pytest_plugins = ["gateway_support.fixtures"]


def test_actual_and_baseline_cost_from_usage(test_pool: Path) -> None:
    pool = load_pool(test_pool)
    baseline = baseline_model(Pricing(pool), None)
    assert baseline.name == "vision-pro"  # the priciest
    cost = answer_cost(pool.model("small-local"), baseline, Usage(1_000_000, 500_000))
    assert cost.cost_usd == pytest.approx(0.10 + 0.10)
    assert cost.baseline_cost_usd == pytest.approx(3.00 + 7.50)
    assert cost.savings_usd == pytest.approx(10.30)
    assert baseline_model(Pricing(pool), "mid-cloud").name == "mid-cloud"
    with pytest.raises(ConfigError, match="not in the pool"):
        baseline_model(Pricing(pool), "nope")


def test_usage_needs_integer_counts() -> None:
    assert Usage.from_openai({"prompt_tokens": 3, "completion_tokens": 4}) == Usage(3, 4)
    assert Usage.from_openai({"prompt_tokens": "3"}) is None
    assert Usage.from_openai(None) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown_s=10, clock=clock)
    breaker.failure("m")
    assert breaker.allow("m")
    breaker.failure("m")
    assert breaker.state("m") == "open" and not breaker.allow("m")
    clock.now = 10.5
    assert breaker.state("m") == "half-open"
    assert breaker.allow("m") and not breaker.allow("m")  # one trial at a time
    breaker.failure("m")
    assert not breaker.allow("m")  # reopened
    clock.now = 21
    assert breaker.allow("m")
    breaker.success("m")
    assert breaker.state("m") == "closed" and breaker.allow("m") and breaker.allow("m")


def test_breaker_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failures=2, cooldown_s=10)
    breaker.failure("m")
    breaker.success("m")
    breaker.failure("m")
    assert breaker.state("m") == "closed"
