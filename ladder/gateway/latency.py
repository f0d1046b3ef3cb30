"""Latency-aware routing in the gateway: the request's budget, exclusions, and live measurements per model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ladder.core.latency import LatencySample, LatencyTracker, pool_priors
from ladder.core.pricing import Usage
from ladder.core.router import Router
from ladder.gateway.dispatch import Dispatched
from ladder.gateway.errors import InvalidRequestError
from ladder.gateway.metrics import GatewayMetrics

LATENCY_HEADER = "x-ladder-max-latency-ms"


def latency_budget(headers: Mapping[str, str] | None, body_value: float | None) -> float | None:
    """The request's latency budget in ms: the body's ``max_latency_ms`` (top level or ``extra_body``), else
    the ``x-ladder-max-latency-ms`` header; None when neither is sent."""
    if body_value is not None:
        return float(body_value)
    raw = (headers or {}).get(LATENCY_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequestError(
            f"{LATENCY_HEADER} must be a positive number of milliseconds, got {raw[:40]!r}", LATENCY_HEADER
        )
    return value


class GatewayLatency:
    """The gateway's expected latency per model: seeded from the pool file's ``latency`` entries, moved by
    every answered call (time to first chunk for streams, total time, output tokens from usage)."""

    def __init__(self, router: Router, metrics: GatewayMetrics | None = None) -> None:
        self.router = router
        self.metrics = metrics
        self.tracker = LatencyTracker(pool_priors(router.pool.models))
        for name, profile in self.tracker.snapshot().items():
            self._export(name, profile.ttft_s, profile.tokens_per_s)

    def output_tokens(self) -> dict[str, float]:
        """Expected output tokens per model, as the router prices them."""
        pricing = self.router.pricing
        return {m.name: pricing.output_tokens(m) for m in self.router.pool.models}

    def exclusions(self, budget_ms: float) -> dict[str, str]:
        """Models expected to miss ``budget_ms``, each with the reason (a model never measured is kept)."""
        return self.tracker.exclusions(self.output_tokens(), budget_ms)

    def observe(
        self, dispatched: Dispatched, usage: Usage | None, elapsed_s: float, ttft_s: float | None = None
    ) -> None:
        """Fold one answered call into its model's estimate. ``elapsed_s``: from dispatch to the end of the
        answer, failed attempts included (they are taken off); a stream's time to first token is its
        successful attempt's time to the first chunk unless ``ttft_s`` says otherwise."""
        if usage is None:
            return
        ok = [a for a in dispatched.attempts if a.outcome == "ok" and a.model == dispatched.model.name]
        if not ok:
            return
        failed_s = sum(a.ms for a in dispatched.failures) / 1000
        streamed = dispatched.reply.events is not None
        first_s = ok[-1].ms / 1000
        total_s = max(elapsed_s - failed_s, first_s) if streamed else first_s
        ttft = (ttft_s if ttft_s is not None else first_s) if streamed else None
        profile = self.tracker.observe(
            dispatched.model.name, LatencySample(total_s, ttft, usage.completion_tokens)
        )
        self._export(dispatched.model.name, profile.ttft_s, profile.tokens_per_s)

    def _export(self, model: str, ttft_s: float, tokens_per_s: float) -> None:
        if self.metrics is not None:
            self.metrics.expected_ttft.labels(model).set(ttft_s)
            self.metrics.expected_speed.labels(model).set(tokens_per_s)

    def describe(self, model: str) -> dict[str, Any] | None:
        """A model's expected latency for ``GET /v1/models``; None when it was never measured or stated."""
        profile = self.tracker.profile(model)
        if profile is None:
            return None
        tokens = self.output_tokens()[model]
        return {
            "ttft_ms": round(profile.ttft_s * 1000, 3),
            "tokens_per_s": None if math.isinf(profile.tokens_per_s) else round(profile.tokens_per_s, 3),
            "expected_output_tokens": tokens,
            "expected_ms": round(profile.expected_ms(tokens), 3),
        }
