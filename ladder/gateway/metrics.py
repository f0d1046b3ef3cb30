"""Prometheus metrics of one gateway (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ladder.gateway.errors import RateLimitError

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class _KeptChildren:
    """``labels(...)`` answered from a dict after the first call with the same values: prometheus_client
    checks and converts the values and takes a lock on every call (about 2.5 µs; a request makes a dozen)."""

    _kept: dict[tuple[Any, ...], Any]

    def labels(self, *values: Any, **named: Any) -> Self:
        if named:
            return super().labels(*values, **named)  # type: ignore[misc, no-any-return]
        kept = self.__dict__.get("_kept")
        if kept is None:
            kept = self._kept = {}
        child = kept.get(values)
        if child is None:
            child = kept[values] = super().labels(*values)  # type: ignore[misc]
        return child  # type: ignore[no-any-return]


class _Counter(_KeptChildren, Counter):
    pass


class _Gauge(_KeptChildren, Gauge):
    pass


class GatewayMetrics:
    """Counters by model for requests, tokens, cost and savings; routing latency and batch sizes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        counter, gauge = self._counter, self._gauge
        self.requests = counter("ladder_requests", "Requests answered, by model and endpoint", "model", "endpoint")
        self.tokens = counter("ladder_tokens", "Tokens by model and kind (prompt, completion)", "model", "kind")
        self.cost = counter("ladder_cost_usd", "Actual cost in USD by model", "model")
        self.baseline_cost = counter(
            "ladder_baseline_cost_usd", "What the baseline model would have cost, by answering model", "model"
        )
        self.savings = counter("ladder_savings_usd", "Baseline cost minus actual cost, by model", "model")
        self.decisions = counter("ladder_decisions", "Routing decisions by chosen model", "model")
        self.fallbacks = counter(
            "ladder_fallbacks", "Upstream failures that moved a request on, by model and reason", "model", "reason"
        )
        self.errors = counter("ladder_errors", "Error responses by status and code", "status", "code")
        self.client_requests = counter("ladder_client_requests", "Answered requests by client key name", "client")
        self.client_tokens = counter("ladder_client_tokens", "Tokens by client key name and kind", "client", "kind")
        self.client_cost = counter("ladder_client_cost_usd", "Actual cost in USD by client key name", "client")
        self.client_rejections = counter(
            "ladder_client_rejections",
            "Requests refused for a client key (rate_limit, day_budget, month_budget)",
            "client",
            "reason",
        )
        self.sessions = counter("ladder_sessions", "Session affinity outcomes (new, kept, moved)", "outcome")
        self.state_errors = counter(
            "ladder_state_errors",
            "Shared-state operations that failed (served without them), by operation",
            "operation",
        )
        self.routing_latency = self._histogram(
            "ladder_routing_latency_seconds", "Time to decide (queue, tokenise, score, policy)", LATENCY_BUCKETS
        )
        self.expected_ttft = gauge("ladder_expected_ttft_seconds", "Expected time to first token, by model", "model")
        self.expected_speed = gauge("ladder_expected_tokens_per_second", "Expected decode speed, by model", "model")
        self.cascade_stages = counter(
            "ladder_cascade_stages", "Cascade stages by model and verdict (accepted, escalated)", "model", "verdict"
        )
        self.batch_size = self._histogram(
            "ladder_scoring_batch_size", "Prompts per scorer call", (1, 2, 4, 8, 16, 32, 64, 128)
        )

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return _Counter(name, documentation, labels, registry=self.registry)

    def _gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return _Gauge(name, documentation, labels, registry=self.registry)

    def _histogram(self, name: str, documentation: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(name, documentation, buckets=buckets, registry=self.registry)

    def refusal(
        self, client: str, reason: str, message: str, retry_after_s: float, code: str = "rate_limit_exceeded"
    ) -> RateLimitError:
        """Count a refusal of ``client``'s request for ``reason``; the 429 to raise for it."""
        self.client_rejections.labels(client, reason).inc()
        return RateLimitError(message, retry_after_s=retry_after_s, code=code)

    def render(self) -> bytes:
        return generate_latest(self.registry)
