"""State shared by gateway replicas (sessions, rate limits, spend): in-process, or in Redis when configured.

One small interface, two implementations. Every key has a TTL. Counters are atomic: Redis does each
operation in one server-side step (``SET NX EX``, a short Lua script around ``HINCRBYFLOAT``, a GCRA rate
limiter reading the server's clock), so any number of replicas can share one Redis.
"""

from __future__ import annotations

import asyncio
import math
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ladder.core.errors import LadderError

DEFAULT_MAX_ENTRIES = 100_000  # session pins: about 30 MB at most


def _add_to_hashes(first: int) -> str:
    """Lua that adds field/amount pairs to ``KEYS[first..]`` and renews each hash's TTL.

    From ``ARGV[first]`` on: how many fields, then field/amount pairs, then one TTL (seconds) per hash.
    """
    return f"""
local n = tonumber(ARGV[{first}])
for k = {first}, #KEYS do
  for i = 0, n - 1 do
    redis.call('HINCRBYFLOAT', KEYS[k], ARGV[{first + 1} + 2 * i], ARGV[{first + 2} + 2 * i])
  end
  redis.call('EXPIRE', KEYS[k], ARGV[{first + 1} + 2 * n + k - {first}])
end
return 1
"""


# KEYS: the hashes; ARGV[1]: how many fields, then field/amount pairs, then one TTL (seconds) per key.
ADD_SCRIPT = _add_to_hashes(1)

# GCRA on the server's clock. KEYS[1]: the key; ARGV[1]: emission interval (ms); ARGV[2]: burst tolerance
# (ms). Returns 0 when admitted, else the milliseconds to wait.
THROTTLE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tolerance then
  return math.ceil(tat - now - tolerance)
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], tostring(next_tat), 'PX', math.ceil(next_tat - now) + 1000)
return 0
"""

# Spend holds (ladder/gateway/spend.py). KEYS[1]: the client's holds (field: hold id, value "usd:expires_ms");
# KEYS[2..]: its usage hashes. ARGV[1]: hold id; ARGV[2]: USD; ARGV[3]: TTL (ms); ARGV[4..]: one budget per
# usage hash ('' for none). Refuses ({index, committed}) when spent + held reaches a budget, else holds.
RESERVE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local amount, expires = string.match(entries[i + 1], '^([^:]+):(.+)$')
  if tonumber(expires) <= now then
    redis.call('HDEL', KEYS[1], entries[i])
  else
    held = held + tonumber(amount)
  end
end
local spent = {}
for k = 2, #KEYS do
  spent[k - 1] = tonumber(redis.call('HGET', KEYS[k], 'cost_usd') or '0')
  local budget = ARGV[2 + k]
  if budget ~= '' and spent[k - 1] + held >= tonumber(budget) then
    return {k - 1, tostring(spent[k - 1] + held)}
  end
end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. tostring(now + ttl))
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {0, tostring(held)}
"""

# The hold's release and its spend in one step. KEYS[1]: the holds; KEYS[2..]: usage hashes; ARGV[1]: hold
# id; ARGV[2]: how many fields, then field/amount pairs, then one TTL (seconds) per usage hash.
SETTLE_SCRIPT = "redis.call('HDEL', KEYS[1], ARGV[1])" + _add_to_hashes(2)


class StateError(LadderError):
    """The shared store could not be reached or answered an error."""


def gcra_parameters(per_minute: int) -> tuple[float, float]:
    """Emission interval and burst tolerance (ms) for ``per_minute`` requests, a minute's worth at once."""
    interval = 60_000.0 / per_minute
    return interval, interval * (per_minute - 1)


@dataclass(frozen=True)
class Hold:
    """Spend set aside for one request until it settles: ``amount_usd`` under ``id`` in the hash ``key``."""

    key: str
    id: str
    amount_usd: float
    ttl_s: float


@dataclass(frozen=True)
class Refusal:
    """Why a hold was refused: the budget at ``index`` is reached by ``committed_usd`` (spent + held)."""

    index: int
    committed_usd: float


class StateStore(ABC):
    """Keys with TTLs: plain values (sessions), float hashes (usage), rate limiters."""

    backend = "abstract"

    @abstractmethod
    async def get(self, key: str) -> str | None:
        """The value, or None when absent or expired."""

    @abstractmethod
    async def put(self, key: str, value: str, ttl_s: float, only_new: bool = False) -> bool:
        """Set with a TTL; with ``only_new`` only when absent (``SET NX``). Whether it was written."""

    @abstractmethod
    async def add(self, keys: Sequence[tuple[str, float]], amounts: Mapping[str, float]) -> None:
        """Atomically add ``amounts`` to the fields of each hash ``(key, ttl_s)`` and refresh its TTL."""

    @abstractmethod
    async def totals(self, keys: Sequence[str]) -> list[dict[str, float]]:
        """Each hash's fields (empty when absent)."""

    @abstractmethod
    async def throttle(self, key: str, per_minute: int) -> float:
        """Take one request from ``key``'s allowance: 0 when admitted, else the seconds until it would be."""

    @abstractmethod
    async def reserve(
        self, hold: Hold, usage_keys: Sequence[str], budgets: Sequence[float | None]
    ) -> Refusal | None:
        """Atomically: refuse when spent plus live holds reach a budget, else add ``hold``."""

    @abstractmethod
    async def settle(
        self, hold: Hold | None, keys: Sequence[tuple[str, float]], amounts: Mapping[str, float]
    ) -> None:
        """Atomically drop ``hold`` and add ``amounts`` to each usage hash (as ``add``)."""

    async def describe(self) -> dict[str, Any]:
        return {"backend": self.backend}

    async def aclose(self) -> None:  # noqa: B027 (nothing to release in memory)
        """Release connections."""


class MemoryState(StateStore):
    """One process's state. Values (session pins) live in a TTL dict that forgets its least recently used
    entries past ``max_entries``; counters (usage, rate limits: a few per client key) are never evicted
    early, so a flood of new conversations cannot reset a budget. Expired entries are swept as it goes."""

    backend = "memory"
    SWEEP_EVERY = 4096

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Any = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._values: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._counters: dict[str, tuple[float, Any]] = {}
        self._holds: dict[str, dict[str, tuple[float, float]]] = {}  # key: id: (usd, expires)
        self._writes = 0

    def _table(self, value: Any) -> dict[str, tuple[float, Any]]:
        return self._values if isinstance(value, str) else self._counters

    def _read(self, key: str) -> Any:
        for table in (self._values, self._counters):
            item = table.get(key)
            if item is None:
                continue
            expires, value = item
            if expires <= self.clock():
                del table[key]
                return None
            if table is self._values:
                self._values.move_to_end(key)
            return value
        return None

    def _write(self, key: str, value: Any, ttl_s: float) -> None:
        table = self._table(value)
        table[key] = (self.clock() + ttl_s, value)
        if table is self._values:
            self._values.move_to_end(key)
            while len(self._values) > self.max_entries:
                self._values.popitem(last=False)
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            now = self.clock()
            for t in (self._values, self._counters):
                for stale in [k for k, (expires, _) in t.items() if expires <= now]:
                    del t[stale]

    async def get(self, key: str) -> str | None:
        value = self._read(key)
        return value if isinstance(value, str) else None

    async def put(self, key: str, value: str, ttl_s: float, only_new: bool = False) -> bool:
        if only_new and self._read(key) is not None:
            return False
        self._write(key, value, ttl_s)
        return True

    async def add(self, keys: Sequence[tuple[str, float]], amounts: Mapping[str, float]) -> None:
        for key, ttl_s in keys:
            current = self._read(key)
            fields: dict[str, float] = dict(current) if isinstance(current, dict) else {}
            for name, amount in amounts.items():
                fields[name] = fields.get(name, 0.0) + float(amount)
            self._write(key, fields, ttl_s)

    async def totals(self, keys: Sequence[str]) -> list[dict[str, float]]:
        out = []
        for key in keys:
            value = self._read(key)
            out.append(dict(value) if isinstance(value, dict) else {})
        return out

    async def throttle(self, key: str, per_minute: int) -> float:
        interval, tolerance = gcra_parameters(per_minute)
        now = float(self.clock()) * 1000
        stored = self._read(key)
        tat: float = max(float(stored) if isinstance(stored, float) else 0.0, now)
        if tat - now > tolerance:
            return (tat - now - tolerance) / 1000
        next_tat = tat + interval
        self._write(key, next_tat, (next_tat - now) / 1000 + 1)
        return 0.0

    async def reserve(
        self, hold: Hold, usage_keys: Sequence[str], budgets: Sequence[float | None]
    ) -> Refusal | None:
        # no await between the read and the write: atomic within the event loop, as the Lua script is
        now = float(self.clock())
        holds = self._holds.setdefault(hold.key, {})
        for stale in [i for i, (_, expires) in holds.items() if expires <= now]:
            del holds[stale]
        held = sum(usd for usd, _ in holds.values())
        for index, (key, budget) in enumerate(zip(usage_keys, budgets, strict=True)):
            value = self._read(key)
            spent = float(value.get("cost_usd", 0.0)) if isinstance(value, dict) else 0.0
            if budget is not None and spent + held >= budget:
                return Refusal(index, spent + held)
        holds[hold.id] = (hold.amount_usd, now + hold.ttl_s)
        return None

    async def settle(
        self, hold: Hold | None, keys: Sequence[tuple[str, float]], amounts: Mapping[str, float]
    ) -> None:
        if hold is not None:
            self._holds.get(hold.key, {}).pop(hold.id, None)
        await self.add(keys, amounts)

    def held_usd(self, key: str) -> float:
        """The live holds under ``key`` (tests and the outage fallback)."""
        now = float(self.clock())
        return sum(usd for usd, expires in self._holds.get(key, {}).values() if expires > now)


class RedisState(StateStore):
    """State in Redis through redis-py's asyncio client; errors become ``StateError``."""

    backend = "redis"

    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        self.client = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),  # one quick retry (a stale connection)
        )
        self._add = self.client.register_script(ADD_SCRIPT)
        self._throttle = self.client.register_script(THROTTLE_SCRIPT)
        self._reserve = self.client.register_script(RESERVE_SCRIPT)
        self._settle = self.client.register_script(SETTLE_SCRIPT)

    async def _call(self, what: str, awaitable: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StateError(f"redis {what} failed: {type(exc).__name__}: {exc}") from exc

    async def get(self, key: str) -> str | None:
        value = await self._call("GET", self.client.get(key))
        return value if isinstance(value, str) else None

    async def put(self, key: str, value: str, ttl_s: float, only_new: bool = False) -> bool:
        written = await self._call(
            "SET", self.client.set(key, value, px=max(1, math.ceil(ttl_s * 1000)), nx=only_new)
        )
        return bool(written)

    async def add(self, keys: Sequence[tuple[str, float]], amounts: Mapping[str, float]) -> None:
        if not keys or not amounts:
            return
        args: list[Any] = [len(amounts)]
        for name, amount in amounts.items():
            args += [name, repr(float(amount))]
        args += [max(1, math.ceil(ttl_s)) for _, ttl_s in keys]
        await self._call("add script", self._add(keys=[k for k, _ in keys], args=args))

    async def totals(self, keys: Sequence[str]) -> list[dict[str, float]]:
        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                result: list[Any] = await pipe.execute()
                return result

        hashes = await self._call("HGETALL", read())
        return [{str(k): float(v) for k, v in h.items()} for h in hashes]

    async def throttle(self, key: str, per_minute: int) -> float:
        interval, tolerance = gcra_parameters(per_minute)
        wait_ms = await self._call("throttle script", self._throttle(keys=[key], args=[interval, tolerance]))
        return float(wait_ms) / 1000

    async def reserve(
        self, hold: Hold, usage_keys: Sequence[str], budgets: Sequence[float | None]
    ) -> Refusal | None:
        args: list[Any] = [hold.id, repr(float(hold.amount_usd)), max(1, math.ceil(hold.ttl_s * 1000))]
        args += ["" if b is None else repr(float(b)) for b in budgets]
        index, committed = await self._call(
            "reserve script", self._reserve(keys=[hold.key, *usage_keys], args=args)
        )
        return Refusal(int(index) - 1, float(committed)) if int(index) > 0 else None

    async def settle(
        self, hold: Hold | None, keys: Sequence[tuple[str, float]], amounts: Mapping[str, float]
    ) -> None:
        if hold is None:
            await self.add(keys, amounts)
            return
        args: list[Any] = [hold.id, len(amounts)]
        for name, amount in amounts.items():
            args += [name, repr(float(amount))]
        args += [max(1, math.ceil(ttl_s)) for _, ttl_s in keys]
        await self._call("settle script", self._settle(keys=[hold.key, *(k for k, _ in keys)], args=args))

    async def describe(self) -> dict[str, Any]:
        try:
            await self._call("PING", self.client.ping())
        except StateError as exc:
            return {"backend": self.backend, "up": False, "error": str(exc)}
        return {"backend": self.backend, "up": True}

    async def aclose(self) -> None:
        await self.client.aclose()


class Background:
    """Writes to the shared state that an answer does not wait for; ``drain`` awaits them at shutdown."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Task[None]] = set()

    def run(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(write)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def drain(self) -> None:
        """Wait until nothing is pending, including tasks started while waiting."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel what is pending and wait for it to stop."""
        for task in list(self.pending):
            task.cancel()
        await asyncio.gather(*list(self.pending), return_exceptions=True)


def make_state(redis_url: str | None, timeout_s: float = 0.5) -> StateStore:
    """Redis when a URL is configured, else this process's memory."""
    return RedisState(redis_url, timeout_s) if redis_url else MemoryState()
