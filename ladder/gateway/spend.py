"""The spend hook of the dispatcher: a reservation taken before each upstream attempt, settled after it.

The dispatcher calls ``reserve`` before it sends an attempt (a ``RateLimitError`` refuses it: nothing is
sent) and ``settle`` once the attempt's cost is known: the real cost of a plain answer at once, a stream's
when the stream ends (``Gateway.record``), ``0.0`` when the request provably never reached the upstream and
``None`` when it is unknown whether it was billed (a timeout or a reset after sending). Budgets plug in a
guard that keeps the reservations; the default guard keeps nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ladder.core.pool import ModelSpec
from ladder.core.pricing import price_usd
from ladder.gateway.capabilities import prompt_tokens
from ladder.gateway.context import Purpose, RequestContext


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
    """A reservation: the claim and the amount the guard set aside for it."""

    claim: SpendClaim
    amount_usd: float


class SpendGuard(Protocol):
    """Takes a reservation before an attempt and settles it to the real cost after."""

    async def reserve(self, claim: SpendClaim) -> Hold:
        """Set aside the attempt's worst case; raise ``RateLimitError`` to refuse it."""
        ...

    async def settle(self, hold: Hold, cost_usd: float | None) -> None:
        """Replace the reservation by the real cost (``None``: unknown, the request may have been billed)."""
        ...


class NoSpendGuard:
    """Reserves nothing (budgets are then checked at admission and counted after the answer)."""

    async def reserve(self, claim: SpendClaim) -> Hold:
        return Hold(claim, 0.0)

    async def settle(self, hold: Hold, cost_usd: float | None) -> None:
        return None
