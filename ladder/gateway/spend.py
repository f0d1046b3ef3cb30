"""Spend reservations: a request's worst-case cost is held at admission, then settled to what it really cost.

``SpendGuard.reserve`` holds the worst case atomically against the client's budgets (a Lua script in Redis,
one uninterrupted step in-process): it is refused (429 ``budget_exceeded``) once spent plus the holds of the
requests in flight reach a budget, so concurrent requests cannot all read the same spend and overrun it;
at most the one request that crosses the budget is answered. ``Reservation.charge`` counts each paid
upstream call (every cascade stage, the estimated usage of a stream the client abandoned); ``settle``
drops the hold and adds what was charged in one step. A hold that is never settled (a crashed replica)
expires after ``hold_ttl_s``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ladder.core.pool import ModelSpec
from ladder.core.pricing import Usage, price_usd
from ladder.gateway.errors import RateLimitError, StateUnavailableError
from ladder.gateway.keys import Client, Limits, Period, usage_ttl_s
from ladder.gateway.state import Hold, StateError

log = logging.getLogger("ladder.gateway")


def max_output_tokens(body: dict[str, object], default: int) -> int:
    """The output the request allows (``max_completion_tokens``, else ``max_tokens``), else ``default``."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def worst_case_usd(models: Iterable[ModelSpec], input_tokens: int, output_tokens: int) -> float:
    """The most one answer could cost: the priciest of ``models`` at ``output_tokens`` (within its window)."""
    costs = [
        price_usd(m, input_tokens, max(0, min(output_tokens, m.context_window - input_tokens))) for m in models
    ]
    return max(costs, default=0.0)


@dataclass
class Reservation:
    """One request's hold and what its upstream calls cost; settled once."""

    guard: SpendGuard
    client: Client
    hold: Hold | None
    worst_case_usd: float
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    settled: bool = field(default=False)

    def charge(self, usage: Usage | None, cost_usd: float | None) -> None:
        """Count one paid upstream call (its usage, reported or estimated, and its price)."""
        if self.settled:
            raise RuntimeError("a settled reservation cannot be charged")
        metrics = self.guard.limits.metrics
        self.calls += 1
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens
            metrics.client_tokens.labels(self.client.name, "prompt").inc(usage.prompt_tokens)
            metrics.client_tokens.labels(self.client.name, "completion").inc(usage.completion_tokens)
        if cost_usd is not None:
            self.cost_usd += cost_usd
            metrics.client_cost.labels(self.client.name).inc(cost_usd)

    def settle(self) -> None:
        """Drop the hold and add what was charged (in the background; a second call does nothing)."""
        if self.settled:
            return
        self.settled = True
        amounts: dict[str, float] = {}
        if self.calls:
            self.guard.limits.metrics.client_requests.labels(self.client.name).inc()
            amounts = {
                "requests": 1.0,
                "prompt_tokens": float(self.prompt_tokens),
                "completion_tokens": float(self.completion_tokens),
                "cost_usd": self.cost_usd,
            }
        if self.hold is None and not amounts:
            return
        self.guard.limits.background.run(self.guard.write(self.client.name, self.hold, amounts))

    release = settle  # nothing charged: the hold is simply dropped


class SpendGuard:
    """Holds and settles spend against the client keys' budgets, in the limits' shared state."""

    def __init__(self, limits: Limits, hold_ttl_s: float, fail_closed: bool) -> None:
        self.limits = limits
        self.hold_ttl_s = hold_ttl_s
        self.fail_closed = fail_closed

    def hold_key(self, client: str) -> str:
        return f"{self.limits.prefix}hold:{{{client}}}"  # the usage hashes' cluster slot

    async def reserve(self, client: Client | None, worst_case_usd: float) -> Reservation:
        """Hold ``worst_case_usd`` for ``client``; 429 when a budget is spent or held, 503 when the shared
        state is down and ``state_unavailable`` is ``closed``."""
        if client is None:
            client = Client("anonymous")
        profile = client.profile
        budgets = (
            (profile.daily_budget_usd, profile.monthly_budget_usd) if profile is not None else (None, None)
        )
        if all(b is None for b in budgets):
            return Reservation(self, client, None, worst_case_usd)
        now = datetime.now(UTC)
        periods = Period.both(now)
        hold = Hold(self.hold_key(client.name), uuid.uuid4().hex, worst_case_usd, self.hold_ttl_s)
        keys = [self.limits.usage_key(client.name, p) for p in periods]
        try:
            refusal = await self.limits.state.reserve(hold, keys, budgets)
        except StateError as exc:
            self.limits.metrics.state_errors.labels("budget").inc()
            if self.fail_closed:
                raise StateUnavailableError(
                    "the shared state (Redis) is unreachable, so budgets cannot be enforced; retry shortly"
                ) from exc
            log.warning("budget not enforced: %s", exc)
            return Reservation(self, client, None, worst_case_usd)
        if refusal is not None:
            period, budget = periods[refusal.index], budgets[refusal.index]
            self.limits.metrics.client_rejections.labels(client.name, f"{period.kind}_budget").inc()
            raise RateLimitError(
                f"client key {client.name!r} has spent or holds ${refusal.committed_usd:.6f} of its "
                f"{period.adjective} budget of ${budget:g} ({period.label}, UTC); it resets at "
                f"{period.ends.isoformat()}",
                retry_after_s=period.seconds_left(now),
                code="budget_exceeded",
            )
        return Reservation(self, client, hold, worst_case_usd)

    async def write(self, client: str, hold: Hold | None, amounts: dict[str, float]) -> None:
        periods = Period.both(datetime.now(UTC))
        keys = [(self.limits.usage_key(client, p), usage_ttl_s(p)) for p in periods]
        try:
            await self.limits.state.settle(hold, keys, amounts)
        except StateError as exc:
            self.limits.failed("usage", exc)
