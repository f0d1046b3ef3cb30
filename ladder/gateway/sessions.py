"""Session affinity: a multi-turn conversation keeps the model that answered it, unless it no longer fits.

A conversation is named by the client (a session header, or Anthropic's ``metadata.user_id``), else by a
stable hash of its opening (the system prompt and the first user turn). Its model is kept for later turns,
so provider prompt caches stay warm and agent sessions stay coherent, unless the turn excludes that model
(a capability it lacks, a context window it cannot hold, a sensitive request for a cloud model, a model the
request or the key does not allow) or the router's P(correct) for it falls more than ``margin`` below the
best eligible model's. The pin lives in the shared state with a TTL that each turn refreshes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ladder.core.decision_record import SessionStatus
from ladder.core.policy import Decision, DecisionOptions
from ladder.gateway.state import Background, StateError, StateStore

log = logging.getLogger("ladder.gateway")

Source = Literal["header", "metadata", "opening"]
Status = SessionStatus  # what the decision record logs as ``session``
MAX_ID_CHARS = 512


@dataclass(frozen=True)
class SessionRef:
    """Where a conversation's pin is stored, and what named the conversation."""

    key: str
    source: Source
    id: str  # a short digest, safe to log and trace (never the client's raw value)


@dataclass(frozen=True)
class SessionOutcome:
    """What the session did to a decision."""

    source: Source
    id: str
    status: Status
    key: str
    previous: str | None = None
    why: str | None = None

    @property
    def kept(self) -> bool:
        return self.status == "kept"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "status": self.status,
            "kept": self.kept,
            "previous_model": self.previous,
            "why": self.why,
        }


def _leading_text(messages: Sequence[Mapping[str, Any]]) -> list[Any] | None:
    """The system/developer messages before the first user turn, and that turn; None without a user turn."""
    opening: list[Any] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            opening.append([role, message.get("content")])
        elif role == "user":
            opening.append(["user", message.get("content")])
            return opening
    return None


def opening_digest(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """A stable hash of a conversation's opening (system prompt + first user turn), or None."""
    opening = _leading_text(messages)
    if opening is None:
        return None
    text = json.dumps(opening, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Sessions:
    """Looks up, keeps or moves a conversation's model in the shared state."""

    def __init__(
        self,
        state: StateStore,
        *,
        enabled: bool,
        ttl_s: float,
        margin: float,
        header: str,
        prefix: str,
        on_outcome: Any = None,
        on_error: Any = None,
    ) -> None:
        self.state = state
        self.enabled = enabled
        self.ttl_s = ttl_s
        self.margin = margin
        self.header = header.lower()
        self.prefix = prefix
        self.on_outcome = on_outcome  # called with the status of every outcome (metrics)
        self.on_error = on_error  # called with the operation that failed (metrics)
        self.background = Background()

    def ref(
        self,
        headers: Mapping[str, str],
        body: Mapping[str, Any],
        hint: str | None,
        client: str,
        options: DecisionOptions,
    ) -> SessionRef | None:
        """The conversation's name: the session header, else the hint (``metadata.user_id``), else its
        opening. Scoped to the client key and the routing lane (policy, tolerance, allowed models), so a
        client that asks for a different trade-off is routed afresh. None when disabled or pinned."""
        if not self.enabled or options.pinned is not None:
            return None
        source: Source
        given = (headers.get(self.header) or "").strip()
        if given:
            source, raw = "header", given[:MAX_ID_CHARS]
        elif hint and hint.strip():
            source, raw = "metadata", hint.strip()[:MAX_ID_CHARS]
        else:
            digest = opening_digest(body.get("messages") or [])
            if digest is None:
                return None
            source, raw = "opening", digest
        lane = [client, options.policy.value, options.tolerance, sorted(options.allowed or ())]
        material = json.dumps([*lane, source, raw], separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(material.encode("utf-8")).hexdigest()
        return SessionRef(f"{self.prefix}session:{digest[:40]}", source, digest[:16])

    async def apply(
        self, ref: SessionRef | None, decision: Decision, write: bool = True
    ) -> tuple[Decision, SessionOutcome | None]:
        """The decision with the session's model kept when it still fits; the pin stored or refreshed."""
        if ref is None:
            return decision, None
        try:
            stored = await self.state.get(ref.key)
        except StateError as exc:
            self._failed("session read", exc)
            return decision, None
        decision, outcome = self.keep_or_move(ref, stored, decision)
        if write:  # stored, or its TTL refreshed, without holding the request back
            self.background.run(self._pin(ref.key, decision.model, only_new=stored is None))
        if self.on_outcome is not None:
            self.on_outcome(outcome.status)
        return decision, outcome

    def keep_or_move(
        self, ref: SessionRef, stored: str | None, decision: Decision
    ) -> tuple[Decision, SessionOutcome]:
        """The pure part: keep ``stored`` when it is eligible and within the margin of the best."""
        if stored is None:
            return decision, SessionOutcome(ref.source, ref.id, "new", ref.key)
        by_name = {c.name: c for c in decision.candidates}
        eligible = [c for c in decision.candidates if c.eligible]
        previous = by_name.get(stored)
        why: str | None = None
        if previous is None:
            why = "no longer in the pool"
        elif not previous.eligible:
            why = previous.excluded_because or "not eligible for this turn"
        elif eligible:
            best = max(c.p_correct for c in eligible)
            if best - previous.p_correct > self.margin + 1e-12:
                why = (
                    f"its P(correct) {previous.p_correct:.3f} is {best - previous.p_correct:.3f} below the "
                    f"best {best:.3f} (margin {self.margin:g})"
                )
        if why is not None or previous is None:
            moved = replace(decision, reason=f"{decision.reason}; session moved from {stored}: {why}")
            return moved, SessionOutcome(ref.source, ref.id, "moved", ref.key, stored, why)
        best = max(c.p_correct for c in eligible)
        if stored == decision.model:
            reason = f"kept for session: {decision.reason}"
        else:
            reason = (
                f"kept for session: {stored} answered this conversation before and its P(correct) "
                f"{previous.p_correct:.3f} is within {self.margin:g} of the best {best:.3f} "
                f"(afresh: {decision.model})"
            )
        kept = replace(decision, model=stored, reason=reason)
        return kept, SessionOutcome(ref.source, ref.id, "kept", ref.key, stored)

    def answered_by(self, outcome: SessionOutcome | None, routed_model: str, model: str) -> None:
        """After a fallback, pin the model that answered: its prompt cache now holds the conversation."""
        if outcome is not None and model != routed_model:
            self.background.run(self._pin(outcome.key, model))

    async def _pin(self, key: str, model: str, only_new: bool = False) -> None:
        try:
            await self.state.put(key, model, self.ttl_s, only_new=only_new)
        except StateError as exc:
            self._failed("session write", exc)

    async def drain(self) -> None:
        await self.background.drain()

    def _failed(self, operation: str, exc: StateError) -> None:
        log.warning("session affinity skipped: %s", exc)
        if self.on_error is not None:
            self.on_error(operation)
