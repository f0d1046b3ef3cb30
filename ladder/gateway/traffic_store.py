"""The gateway's side of the traffic database: one writer thread, so no request waits on a disk write."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from ladder.core.decision_record import DecisionRecord
from ladder.core.traffic_db import DecisionRow, OutcomeRow, TrafficDB

T = TypeVar("T")
MAX_BATCH = 256
log = logging.getLogger("ladder.traffic")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class TrafficStore:
    """Decisions are queued and written in batches; reads and feedback run on the same thread, in order.

    Order matters: a client that reports feedback right after its answer finds the decision, because the
    decision was queued first and the queue is served first in, first out.
    """

    def __init__(self, target: str) -> None:
        self.db = TrafficDB(target)
        self._queue: queue.Queue[DecisionRow | Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ladder-traffic-writer", daemon=True)
        self._thread.start()

    def remember(self, record: DecisionRecord, prompt: str | None) -> None:
        """Queue one decision (never blocks the caller)."""
        self._queue.put(DecisionRow(str(record.request_id), now(), record, prompt))

    async def call(self, fn: Callable[[TrafficDB], T]) -> T:
        """Run ``fn(db)`` on the writer thread after everything queued before it."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(self.db))
            except BaseException as exc:
                future.set_exception(exc)

        self._queue.put(job)
        return await asyncio.wrap_future(future)

    async def add_outcome(self, outcome: OutcomeRow) -> None:
        await self.call(lambda db: db.add_outcome(outcome))

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.db.close()

    def _run(self) -> None:
        item = self._queue.get()
        while True:
            batch: list[DecisionRow] = []
            while isinstance(item, DecisionRow):
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    item = _NOTHING
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = _NOTHING
            self._write(batch)
            if item is None:
                return
            if item is not _NOTHING:
                item()
            item = self._queue.get()

    def _write(self, batch: list[DecisionRow]) -> None:
        if not batch:
            return
        try:
            self.db.add_decisions(batch)
        except Exception:  # a full disk must not take the gateway down; the audit log still has them
            log.exception("could not store %d decisions in the traffic database", len(batch))


def _nothing() -> None:
    """A marker: nothing left to do after a batch."""


_NOTHING: Callable[[], None] = _nothing
