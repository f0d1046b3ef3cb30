"""Spend: a request's worst-case cost held at admission, every paid upstream call charged to it by the
dispatcher, the hold settled to what the request really cost.

``SpendGuard.reserve`` holds the worst case atomically against the client's budgets (a Lua script in Redis,
one uninterrupted step in-process): it is refused (429 ``budget_exceeded``) once spent plus the holds of the
requests in flight reach a budget, so concurrent requests cannot all read the same spend and overrun it;
at most the one request that crosses the budget is answered. The gateway takes that reservation once per
request (the worst case of the models it may reach, or of every cascade rung) and puts it on the request's
context (``RequestContext.reservations``).

Every upstream attempt passes the dispatcher (``ladder.gateway.dispatch``), which calls its spend hook
(``SpendHook``) before the attempt (a refusal sends nothing) and after it, with the attempt's cost and usage
once known: a plain answer at once, a stream when it ends or the client abandons it (estimated usage), every
cascade stage and second opinion as it is paid. The gateway's hook, ``BudgetHook``, charges each paid attempt
to the request's reservation (``Reservation.charge``); an attempt made for a request that holds no open
reservation takes its own hold for the attempt's worst case and settles it after, so no paid call escapes
the budgets. Shadow judging (reference and judge) is the operator's cost: it passes the dispatcher (locality,
deadline) but is never charged to the client's key. ``Reservation.settle`` drops the hold and adds what was
charged in one step. A hold that is never settled (a crashed replica) expires after ``hold_ttl_s``.

When the shared state (Redis) is unreachable, ``fail_closed`` refuses the requests of keys with budgets
(503); otherwise holds are taken in this process's memory, from the last spend read from Redis. Either
way, spend settled during the outage is buffered (summed per usage hash, so the buffer stays small) and
replayed when Redis answers again.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ladder.core.pool import ModelSpec
from ladder.core.pricing import Usage, price_usd
from ladder.gateway.capabilities import prompt_tokens
from ladder.gateway.context import Purpose, RequestContext
from ladder.gateway.errors import StateUnavailableError
from ladder.gateway.keys import DAY_TTL_S, Client, Limits, Period, usage_ttl_s
from ladder.gateway.state import Hold as StateHold
from ladder.gateway.state import MemoryState, StateError

log = logging.getLogger("ladder.gateway")


def max_output_tokens(body: dict[str, object], default: int) -> int:
    """The output the request allows (``max_completion_tokens``, else ``max_tokens``), else ``default``."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def held_input_tokens(estimate: int) -> int:
    """The input tokens held: the routing estimate plus a margin, as upstream tokenizers count more (message
    framing, other vocabularies)."""
    return math.ceil(estimate * 1.25) + 8


def worst_case_usd(models: Iterable[ModelSpec], input_tokens: int, output_tokens: int) -> float:
    """The most one answer could cost: the priciest of ``models`` at ``output_tokens`` (within its window),
    ``input_tokens`` given as ``held_input_tokens`` of the estimate."""
    costs = [
        price_usd(m, input_tokens, max(0, min(output_tokens, m.context_window - input_tokens))) for m in models
    ]
    return max(costs, default=0.0)


@dataclass
class Reservation:
    """One request's hold and what its upstream calls cost; settled once."""

    guard: SpendGuard
    client: Client
    hold: StateHold | None
    worst_case_usd: float
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    settled: bool = field(default=False)

    def charge(self, usage: Usage | None, cost_usd: float | None) -> None:
        """Count one paid upstream call (its usage, reported or estimated, and its price)."""
        late = self.settled  # charged after the settlement (never expected): written on its own
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
        if late:
            amounts = {"cost_usd": cost_usd or 0.0}
            if usage is not None:
                amounts["prompt_tokens"] = float(usage.prompt_tokens)
                amounts["completion_tokens"] = float(usage.completion_tokens)
            self.guard.limits.background.run(self.guard.write(self.client.name, None, amounts))

    def settle(self, answered: bool = False) -> None:
        """Drop the hold and add what was charged (in the background; a second call does nothing);
        ``answered``: the request was answered, so it counts as one even if no call reported its usage."""
        if self.settled:
            return
        self.settled = True
        amounts: dict[str, float] = {}
        if self.calls or answered:
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
        self.local = MemoryState()  # holds while the shared state is down (``fail_closed`` off)
        self.local_holds: set[str] = set()  # ids of the holds taken there
        self.pending: dict[tuple[str, float], dict[str, float]] = {}  # spend to replay into the state
        self.outage = False  # the last call to the shared state failed

    @property
    def shared(self) -> bool:
        return not isinstance(self.limits.state, MemoryState)

    @staticmethod
    def budgets(client: Client | None) -> tuple[float | None, float | None]:
        """The client's daily and monthly budgets (None: none)."""
        profile = client.profile if client is not None else None
        return (profile.daily_budget_usd, profile.monthly_budget_usd) if profile is not None else (None, None)

    def hold_key(self, client: str) -> str:
        return f"{self.limits.prefix}hold:{{{client}}}"  # the usage hashes' cluster slot

    async def reserve(self, client: Client | None, worst_case_usd: float) -> Reservation:
        """Hold ``worst_case_usd`` for ``client``; 429 when a budget is spent or held, 503 when the shared
        state is down and ``state_unavailable`` is ``closed``."""
        if client is None:
            client = Client("anonymous")
        budgets = self.budgets(client)
        if all(b is None for b in budgets):
            return Reservation(self, client, None, worst_case_usd)
        now = datetime.now(UTC)
        periods = Period.both(now)
        hold = StateHold(self.hold_key(client.name), uuid.uuid4().hex, worst_case_usd, self.hold_ttl_s)
        keys = [self.limits.usage_key(client.name, p) for p in periods]
        try:
            refusal = await self.limits.state.reserve(hold, keys, budgets)
            await self._recovered()
        except StateError as exc:
            self._lost(exc)
            if self.fail_closed:
                raise StateUnavailableError(
                    "the shared state (Redis) is unreachable, so budgets cannot be enforced; retry shortly"
                ) from exc
            await self._seed(keys)
            refusal = await self.local.reserve(hold, keys, budgets)
            if refusal is None:
                self.local_holds.add(hold.id)
        if refusal is not None:
            period, budget = periods[refusal.index], budgets[refusal.index]
            raise self.limits.metrics.refusal(
                client.name,
                f"{period.kind}_budget",
                f"client key {client.name!r} has spent or holds ${refusal.committed_usd:.6f} of its "
                f"{period.adjective} budget of ${budget:g} ({period.label}, UTC); it resets at "
                f"{period.ends.isoformat()}",
                retry_after_s=period.seconds_left(now),
                code="budget_exceeded",
            )
        return Reservation(self, client, hold, worst_case_usd)

    async def write(self, client: str, hold: StateHold | None, amounts: dict[str, float]) -> None:
        """Settle in the store that holds ``hold``; spend that cannot reach the shared state is buffered."""
        periods = Period.both(datetime.now(UTC))
        keys = [(self.limits.usage_key(client, p), usage_ttl_s(p)) for p in periods]
        if hold is not None and hold.id in self.local_holds:
            self.local_holds.discard(hold.id)
            await self.local.settle(hold, keys, amounts)  # the local view of the spend, until Redis returns
            hold = None
        try:
            await self.limits.state.settle(hold, keys, amounts)
            for name_ttl in keys:  # the last spend known, should the state go down next
                last = self.limits.last_totals.setdefault(name_ttl[0], {})
                for name, amount in amounts.items():
                    last[name] = last.get(name, 0.0) + amount
            await self._recovered()
        except StateError as exc:
            self._lost(exc)
            for key in keys:
                buffered = self.pending.setdefault(key, {})
                for name, amount in amounts.items():
                    buffered[name] = buffered.get(name, 0.0) + amount

    async def _seed(self, keys: list[str]) -> None:
        """Start the local view of a usage hash from the last spend read from the shared state."""
        for key in keys:
            if (await self.local.totals([key]))[0]:
                continue
            last = self.limits.last_totals.get(key)
            if last:
                await self.local.add([(key, float(DAY_TTL_S))], last)

    def _lost(self, exc: StateError) -> None:
        if not self.outage:
            log.warning("shared state unreachable: %s", exc)
        self.outage = True
        self.limits.metrics.state_errors.labels("budget").inc()

    async def _recovered(self) -> None:
        """After an outage: replay the buffered spend, forget the local view."""
        if not self.outage and not self.pending:
            return
        self.outage = False
        while self.pending:
            key, amounts = self.pending.popitem()
            try:
                await self.limits.state.add([key], amounts)
            except StateError as exc:
                self.pending[key] = amounts
                self._lost(exc)
                return
        self.local = MemoryState()
        log.info("shared state reachable again: buffered spend replayed")

    async def replay(self) -> bool:
        """Try the shared state now (``/readyz``): whether it answers; buffered spend is replayed if so."""
        if not self.shared:
            return True
        try:
            await self.limits.state.totals([f"{self.limits.prefix}probe"])
        except StateError as exc:
            self._lost(exc)
            return False
        await self._recovered()
        return not self.outage


# The dispatcher's spend hook: called around every upstream attempt.

OPERATOR_PURPOSES = frozenset({Purpose.SHADOW_REFERENCE, Purpose.SHADOW_JUDGE})  # never the client's cost


@dataclass(frozen=True)
class SpendClaim:
    """One attempt about to be sent: for which request, to which model, why, with which body."""

    ctx: RequestContext
    model: ModelSpec
    purpose: Purpose
    body: Mapping[str, Any]

    def worst_case_usd(self) -> float:
        """The most the attempt can cost: its estimated prompt, and ``max_tokens`` (else the rest of the
        model's context window) of answer."""
        prompt = prompt_tokens(self.body)
        asked = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        room = max(0, self.model.context_window - prompt)
        answer = min(asked, room) if isinstance(asked, int) and asked > 0 else room
        return price_usd(self.model, prompt, answer)


@dataclass(frozen=True)
class Hold:
    """An attempt's reservation: the claim, the amount set aside for it, and the request's reservation it is
    charged to (``own``: taken for this attempt alone, settled with it)."""

    claim: SpendClaim
    amount_usd: float
    reservation: Reservation | None = None
    own: bool = False


class SpendHook(Protocol):
    """What the dispatcher calls before an attempt (``reserve``) and once its cost is known (``settle``)."""

    async def reserve(self, claim: SpendClaim) -> Hold:
        """Set aside the attempt's worst case; raise ``RateLimitError`` to refuse it (nothing is sent)."""
        ...

    async def settle(self, hold: Hold, cost_usd: float | None, usage: Usage | None = None) -> None:
        """The attempt's real cost and usage (``None``: unknown, or not billed: a failed attempt)."""
        ...


class NoSpend:
    """Keeps nothing: the dispatcher's default where no hook is given (tests, tools)."""

    async def reserve(self, claim: SpendClaim) -> Hold:
        return Hold(claim, 0.0)

    async def settle(self, hold: Hold, cost_usd: float | None, usage: Usage | None = None) -> None:
        return None


class BudgetHook:
    """The gateway's spend hook: each paid attempt is charged to the request's open reservation; an attempt
    for a request without one holds its own worst case against the budgets, settled with the attempt.
    Shadow judging is not charged to the client."""

    def __init__(self, guard: SpendGuard) -> None:
        self.guard = guard

    async def reserve(self, claim: SpendClaim) -> Hold:
        if claim.purpose in OPERATOR_PURPOSES:
            return Hold(claim, 0.0)
        reservation = claim.ctx.open_reservation()
        if reservation is not None:  # the request's admission hold covers it
            return Hold(claim, 0.0, reservation)
        worst = claim.worst_case_usd() if any(b is not None for b in self.guard.budgets(claim.ctx.client)) else 0.0
        own = await self.guard.reserve(claim.ctx.client, worst)
        return Hold(claim, worst, own, own=True)

    async def settle(self, hold: Hold, cost_usd: float | None, usage: Usage | None = None) -> None:
        reservation = hold.reservation
        if reservation is None:
            return
        if usage is not None:  # paid: a reply that reported (or a stream that was estimated) its usage
            reservation.charge(usage, cost_usd)
        if hold.own:
            reservation.settle()
