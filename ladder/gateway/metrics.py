"""Prometheus metrics of one gateway (its own registry, so several apps can live in one process)."""

from __future__ import annotations

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


class GatewayMetrics:
    """Counters by model for requests, tokens, cost and savings; routing latency and batch sizes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ladder_requests", "Requests answered, by model and endpoint", ["model", "endpoint"], registry=r
        )
        self.tokens = Counter(
            "ladder_tokens", "Tokens by model and kind (prompt, completion)", ["model", "kind"], registry=r
        )
        self.cost = Counter("ladder_cost_usd", "Actual cost in USD by model", ["model"], registry=r)
        self.baseline_cost = Counter(
            "ladder_baseline_cost_usd",
            "What the baseline model would have cost, by answering model",
            ["model"],
            registry=r,
        )
        self.savings = Counter(
            "ladder_savings_usd", "Baseline cost minus actual cost, by model", ["model"], registry=r
        )
        self.decisions = Counter(
            "ladder_decisions", "Routing decisions by chosen model", ["model"], registry=r
        )
        self.fallbacks = Counter(
            "ladder_fallbacks",
            "Upstream failures that moved a request on, by model and reason",
            ["model", "reason"],
            registry=r,
        )
        self.errors = Counter(
            "ladder_errors", "Error responses by status and code", ["status", "code"], registry=r
        )
        self.client_requests = Counter(
            "ladder_client_requests", "Answered requests by client key name", ["client"], registry=r
        )
        self.client_tokens = Counter(
            "ladder_client_tokens", "Tokens by client key name and kind", ["client", "kind"], registry=r
        )
        self.client_cost = Counter(
            "ladder_client_cost_usd", "Actual cost in USD by client key name", ["client"], registry=r
        )
        self.client_rejections = Counter(
            "ladder_client_rejections",
            "Requests refused for a client key (rate_limit, day_budget, month_budget)",
            ["client", "reason"],
            registry=r,
        )
        self.sessions = Counter(
            "ladder_sessions", "Session affinity outcomes (new, kept, moved)", ["outcome"], registry=r
        )
        self.state_errors = Counter(
            "ladder_state_errors",
            "Shared-state operations that failed (served without them), by operation",
            ["operation"],
            registry=r,
        )
        self.routing_latency = Histogram(
            "ladder_routing_latency_seconds",
            "Time to decide (queue, tokenise, score, policy)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.expected_ttft = Gauge(
            "ladder_expected_ttft_seconds", "Expected time to first token, by model", ["model"], registry=r
        )
        self.expected_speed = Gauge(
            "ladder_expected_tokens_per_second", "Expected decode speed, by model", ["model"], registry=r
        )
        self.cascade_stages = Counter(
            "ladder_cascade_stages",
            "Cascade stages by model and verdict (accepted, escalated)",
            ["model", "verdict"],
            registry=r,
        )
        self.batch_size = Histogram(
            "ladder_scoring_batch_size",
            "Prompts per scorer call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )

    def refusal(
        self, client: str, reason: str, message: str, retry_after_s: float, code: str = "rate_limit_exceeded"
    ) -> RateLimitError:
        """Count a refusal of ``client``'s request for ``reason``; the 429 to raise for it."""
        self.client_rejections.labels(client, reason).inc()
        return RateLimitError(message, retry_after_s=retry_after_s, code=code)

    def render(self) -> bytes:
        return generate_latest(self.registry)
