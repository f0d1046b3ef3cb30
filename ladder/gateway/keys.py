"""Client keys and their profiles: who is calling, what they may use, how fast, and how much they may spend.

A profile names a key (the name is what metrics, usage and traces show; the secret never appears) and can
carry a default tolerance, an allowed model subset, a request rate limit (GCRA, requests per minute) and a
spend budget per UTC day and/or month in USD. Spend is held at admission and settled to the actual cost
after the answer (``ladder.gateway.spend``); a budget refuses requests once the spend and the holds of the
requests in flight reach it (the one request that crosses it is answered).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ladder.core.errors import ConfigError, UnknownModelError
from ladder.gateway.errors import AuthenticationError, StateUnavailableError
from ladder.gateway.metrics import GatewayMetrics
from ladder.gateway.state import Background, MemoryState, StateError, StateStore

log = logging.getLogger("ladder.gateway")

ANONYMOUS = "anonymous"
DAY_TTL_S = 3 * 86_400
MONTH_TTL_S = 33 * 86_400
USAGE_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cost_usd")


class KeyProfile(BaseModel):
    """One client key and what it may do (``key_profiles`` in the settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="Shown in metrics and usage")
    key: SecretStr = Field(description="The bearer key the client sends")
    tolerance: float | None = Field(default=None, ge=0, le=1, description="Default tolerance")
    models: list[str] | None = Field(default=None, min_length=1, description="The models it may reach")
    requests_per_minute: int | None = Field(default=None, ge=1, description="Rate limit")
    daily_budget_usd: float | None = Field(default=None, gt=0, description="Spend per UTC day")
    monthly_budget_usd: float | None = Field(default=None, gt=0, description="Spend per UTC month")
    max_concurrent: int | None = Field(default=None, ge=1, description="Requests in flight at once")
    max_streams: int | None = Field(default=None, ge=1, description="Streamed answers open at once")
    admin: bool = Field(default=False, description="May read every client's usage")
    cascade: bool = Field(default=False, description="Answer in cascade mode unless a request says otherwise")
    on_prem_only: bool = Field(
        default=False, description="Treat every request as sensitive: on-prem models only, prompts never kept"
    )


@dataclass(frozen=True)
class Client:
    """The caller of one request."""

    name: str
    profile: KeyProfile | None = None

    @property
    def admin(self) -> bool:
        return self.profile is not None and self.profile.admin


def presented_key(headers: Mapping[str, str]) -> str:
    """The bearer key, or Anthropic's ``x-api-key``."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_name(key: str) -> str:
    """The name of a key without a profile: a short fingerprint, never the key."""
    return f"key-{_digest(key).hex()[:8]}"


class ClientKeys:
    """Maps a presented key to its client, looked up by its SHA-256 digest (the keys are not kept)."""

    def __init__(
        self,
        api_keys: Iterable[SecretStr],
        profiles: Iterable[KeyProfile],
        auth_disabled: bool,
        pool_names: Iterable[str],
    ) -> None:
        self.auth_disabled = auth_disabled
        self.by_digest: dict[bytes, Client] = {}
        names = set(pool_names)
        for profile in profiles:
            unknown = sorted(set(profile.models or ()) - names)
            if unknown:
                raise ConfigError(
                    f"key_profiles: {profile.name}: models {unknown} are not in the pool {sorted(names)}"
                )
            self.by_digest[_digest(profile.key.get_secret_value())] = Client(profile.name, profile)
        for secret in api_keys:
            value = secret.get_secret_value()
            self.by_digest.setdefault(_digest(value), Client(key_name(value)))
        self.clients = {c.name: c for c in self.by_digest.values()}

    def identify(self, headers: Mapping[str, str]) -> Client | None:
        """The client whose key was presented; anonymous when auth is disabled and no known key was sent."""
        presented = presented_key(headers)
        client = self.by_digest.get(_digest(presented)) if presented else None
        if client is not None:
            return client
        return Client(ANONYMOUS) if self.auth_disabled else None

    def authenticate(self, headers: Mapping[str, str]) -> Client:
        client = self.identify(headers)
        if client is not None:
            return client
        if not presented_key(headers):
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        raise AuthenticationError("invalid API key")


def restrict(client: Client | None, pinned: str | None, names: Iterable[str]) -> dict[str, str]:
    """Models the client's profile does not allow, with the reason (merged into the policy's exclusions);
    a pinned model it may not use is a 404, as OpenAI answers for a model a key cannot see."""
    allowed = client.profile.models if client is not None and client.profile is not None else None
    if client is None or allowed is None:
        return {}
    if pinned is not None and pinned not in allowed:
        raise UnknownModelError(f"model {pinned!r} is not available to client key {client.name!r}")
    return {n: f"not allowed for client key {client.name!r}" for n in names if n not in allowed}


@dataclass(frozen=True)
class Period:
    """A UTC day or month: its label and when it ends."""

    kind: str
    label: str
    ends: datetime

    @classmethod
    def both(cls, now: datetime) -> tuple[Period, Period]:
        """The day and the month ``now`` (UTC) falls in; built once per day, as every request asks."""
        return _periods_of(now.date(), now.tzinfo)

    @classmethod
    def _both(cls, now: datetime) -> tuple[Period, Period]:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        month_start = day_start.replace(day=1)
        next_month = (month_start + timedelta(days=32)).replace(day=1)
        return (
            cls("day", day_start.strftime("%Y-%m-%d"), day_start + timedelta(days=1)),
            cls("month", month_start.strftime("%Y-%m"), next_month),
        )

    @property
    def adjective(self) -> str:
        return "daily" if self.kind == "day" else "monthly"

    def seconds_left(self, now: datetime) -> float:
        return max(1.0, (self.ends - now).total_seconds())


def usage_ttl_s(period: Period) -> float:
    return DAY_TTL_S if period.kind == "day" else MONTH_TTL_S


class Limits:
    """Rate limits, budgets and usage per client, in the shared state. When it is down, ``fail_closed``
    refuses the requests of keys with limits (503); otherwise they are served without them."""

    def __init__(
        self, state: StateStore, metrics: GatewayMetrics, prefix: str, fail_closed: bool = False
    ) -> None:
        self.state = state
        self.metrics = metrics
        self.prefix = prefix
        self.fail_closed = fail_closed
        self.background = Background()
        self.last_totals: dict[str, dict[str, float]] = {}  # the last usage read per hash (outage fallback)
        self.local = MemoryState()  # rate limits while the shared state is down (``fail_closed`` off)

    def usage_key(self, client: str, period: Period) -> str:
        # the braces keep a client's day and month in one Redis Cluster slot (one script touches both)
        return f"{self.prefix}usage:{{{client}}}:{period.kind}:{period.label}"

    async def admit(self, client: Client, spends: bool = True) -> None:
        """Raise ``RateLimitError`` (429) when the client is over its rate or, if ``spends``, its budget.
        The rate limiter and the budget are read at once (one round trip to Redis, not two)."""
        profile = client.profile
        if profile is None:
            return
        budgets = (profile.daily_budget_usd, profile.monthly_budget_usd) if spends else (None, None)
        now = datetime.now(UTC)
        periods = Period.both(now)
        wait_s, totals = await asyncio.gather(
            self._throttle(client.name, profile.requests_per_minute),
            self._totals(client.name, periods, any(b is not None for b in budgets)),
        )
        if wait_s > 0:
            raise self.metrics.refusal(
                client.name,
                "rate_limit",
                f"client key {client.name!r} is over its rate limit of {profile.requests_per_minute} "
                f"requests per minute; retry in {wait_s:.1f} s",
                retry_after_s=wait_s,
            )
        for period, total, budget in zip(periods, totals, budgets, strict=True):
            spent = total.get("cost_usd", 0.0)
            if budget is not None and spent >= budget:
                raise self.metrics.refusal(
                    client.name,
                    f"{period.kind}_budget",
                    f"client key {client.name!r} has spent ${spent:.6f} of its {period.adjective} budget of "
                    f"${budget:g} ({period.label}, UTC); it resets at {period.ends.isoformat()}",
                    retry_after_s=period.seconds_left(now),
                    code="budget_exceeded",
                )

    async def _throttle(self, client: str, per_minute: int | None) -> float:
        if per_minute is None:
            return 0.0
        key = f"{self.prefix}rate:{client}"
        try:
            return await self.state.throttle(key, per_minute)
        except StateError as exc:
            self._unenforced("rate limit", exc)
            return await self.local.throttle(key, per_minute)  # this replica's share of the outage

    async def _totals(
        self, client: str, periods: tuple[Period, Period], wanted: bool
    ) -> list[dict[str, float]]:
        if not wanted:
            return [{}, {}]
        keys = [self.usage_key(client, p) for p in periods]
        try:
            totals = await self.state.totals(keys)
        except StateError as exc:
            self._unenforced("budget", exc)
            return [{}, {}]
        self.last_totals.update(zip(keys, totals, strict=True))
        return totals

    async def drain(self) -> None:
        """Wait for the usage writes still in flight (at shutdown)."""
        await self.background.drain()

    async def usage(self, client: Client) -> dict[str, Any]:
        """The client's requests, tokens and spend today and this month, against its budgets."""
        now = datetime.now(UTC)
        periods = Period.both(now)
        try:
            totals = await self.state.totals([self.usage_key(client.name, p) for p in periods])
        except StateError as exc:
            self.failed("usage", exc)
            totals = [{}, {}]
        profile = client.profile
        budgets = (
            (profile.daily_budget_usd, profile.monthly_budget_usd) if profile is not None else (None, None)
        )
        out: dict[str, Any] = {
            "client": client.name,
            "requests_per_minute": profile.requests_per_minute if profile is not None else None,
            "tolerance": profile.tolerance if profile is not None else None,
            "models": profile.models if profile is not None else None,
        }
        for period, total, budget in zip(periods, totals, budgets, strict=True):
            entry: dict[str, Any] = {"period": period.label, "resets_at": period.ends.isoformat()}
            entry.update({f: int(total.get(f, 0)) for f in USAGE_FIELDS if f != "cost_usd"})
            entry["cost_usd"] = round(total.get("cost_usd", 0.0), 10)
            entry["budget_usd"] = budget
            left = None if budget is None else round(max(0.0, budget - entry["cost_usd"]), 10)
            entry["remaining_usd"] = left
            out[period.kind] = entry
        return out

    def _unenforced(self, operation: str, exc: StateError) -> None:
        self.failed(operation, exc)
        if self.fail_closed:
            raise StateUnavailableError(
                f"the shared state (Redis) is unreachable, so the {operation} of this key cannot be "
                "enforced; retry shortly"
            ) from exc

    def failed(self, operation: str, exc: StateError) -> None:
        log.warning("%s not enforced: %s", operation, exc)
        self.metrics.state_errors.labels(operation).inc()


@functools.lru_cache(maxsize=2)
def _periods_of(day: date, tz: tzinfo | None) -> tuple[Period, Period]:
    """`Period.both` for a calendar day: the periods depend on the day alone (two kept: today and yesterday)."""
    return Period._both(datetime(day.year, day.month, day.day, tzinfo=tz))
