"""The per-request context: who asked, under which profile and id, whether it is sensitive, by when it must end.

Built once, when the route has the authenticated client and the request body, and passed down to routing,
dispatch, cascades and shadow judging, so no later step re-derives any of it from the headers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ladder.core.sensitivity import SensitiveScan
from ladder.gateway.keys import Client, KeyProfile

if TYPE_CHECKING:
    from ladder.gateway.spend import Reservation

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


class Purpose(StrEnum):
    """Why an upstream call is made for a request (every one passes the dispatcher)."""

    ANSWER = "answer"  # the answer, its retries and fallbacks
    CASCADE_STAGE = "cascade stage"
    SECOND_OPINION = "second opinion"
    SELF_CHECK = "self-check"  # a calibrated cascade asks a model whether its answer is right
    SHADOW_REFERENCE = "shadow reference"
    SHADOW_JUDGE = "shadow judge"


@dataclass(frozen=True)
class Sensitivity:
    """Whether a request may only meet on-prem models, and why (``header``, ``key profile``, ``pattern``)."""

    sensitive: bool
    because: str | None = None

    @classmethod
    def decide(
        cls,
        header: str | None,
        profile: KeyProfile | None,
        body: Mapping[str, Any],
        scan: SensitiveScan,
    ) -> Sensitivity:
        """The client's header, the key's ``on_prem_only`` profile, else the patterns over the whole body."""
        if header is not None and header.strip().lower() in TRUE_VALUES:
            return cls(True, "header")
        if profile is not None and profile.on_prem_only:
            return cls(True, "key profile")
        if scan.matches(body):
            return cls(True, "pattern")
        return cls(False)


@dataclass(frozen=True)
class RequestContext:
    """One request's caller, id, sensitivity and deadline (``time.monotonic()`` seconds), and the spend
    reservations taken for it, which the dispatcher charges each paid attempt to (``ladder.gateway.spend``)."""

    client: Client
    request_id: str
    sensitivity: Sensitivity
    deadline: float
    reservations: list[Reservation] = field(default_factory=list, compare=False, repr=False)

    @property
    def profile(self) -> KeyProfile | None:
        return self.client.profile

    @property
    def sensitive(self) -> bool:
        return self.sensitivity.sensitive

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def open_reservation(self) -> Reservation | None:
        """The request's reservation still open (not settled), if any: where its attempts are charged."""
        return next((r for r in reversed(self.reservations) if not r.settled), None)

    def with_deadline_in(self, seconds: float) -> RequestContext:
        """The same request with a fresh deadline and no reservation: work done for it after the answer
        (shadow judging, the operator's cost, never charged to the client)."""
        return replace(self, deadline=time.monotonic() + seconds, reservations=[])
