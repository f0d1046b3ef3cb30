"""Kill -9 and restart a real tritonserver during a chaos run, and judge the requests that met each outage.

A thread waits until ``every`` requests have completed with the gateway scoring on Triton, SIGKILLs the
server (its python stubs too), keeps it down for ``down_s``, restarts it on the same ports and waits until
the gateway scores on it again; ``kills`` times, and the run goes on for ``every`` more requests after the
last (``going`` is ``drive``'s ``keep_going``: a gateway answering 503 at once can drain a fixed-size run
within one outage). A request met an outage when it was in flight at any moment from the kill until the
gateway was back on Triton; those requests must be answered (the embedded fallback) or cleanly refused
(503 with ``on_unavailable=error``) within the deadline, like every other.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.bench.chaos import GRACE_S, Outcome
from ladder.core.router import Router
from ladder.export.triton_server import TritonServer, TritonStartError


def router_repository(router: Router, out: Path) -> Path:
    """A cpu export at ``out`` of ``router``'s checkpoint with the encoder variant it routes with: what a
    gateway routing with ``router`` serves when it scores on Triton."""
    from ladder.export.triton_repo import export_repository

    int8 = router.pool.routing.encoder_variant == "int8"
    export_repository(router.checkpoint.directory, out, flavour="cpu", int8=int8, log=lambda _: None)
    return out


@dataclass
class Outage:
    """One kill, in ``time.perf_counter()`` seconds: when, when Triton was ready, when the gateway used it."""

    killed_at: float
    ready_at: float | None = None
    back_at: float | None = None

    def overlaps(self, outcome: Outcome) -> bool:
        end = self.back_at or self.ready_at or float("inf")
        return outcome.started < end and outcome.started + outcome.seconds > self.killed_at


@dataclass(eq=False)
class TritonOutages:
    """Kills ``server`` ``kills`` times, each after ``every`` requests completed with Triton in use.

    ``in_use()`` says whether the gateway scores on Triton now (its ``/readyz``, or the scorer itself); a
    kill waits for it, so every outage starts under traffic through Triton. Give ``completed`` and ``going``
    to ``ladder.bench.chaos.drive`` as ``on_outcome`` and ``keep_going``.
    """

    server: TritonServer
    kills: int
    every: int
    in_use: Callable[[], bool]
    down_s: float = 2.0
    wait_s: float = 60.0
    outages: list[Outage] = field(default_factory=list, init=False)
    errors: list[str] = field(default_factory=list, init=False)
    _done: int = field(default=0, init=False)
    _since: int = field(default=0, init=False)  # requests completed when Triton was last back in use (or at the start)
    _progress: threading.Condition = field(default_factory=threading.Condition, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread = field(init=False)
    _started: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="triton-outages", daemon=True)

    def completed(self, _: Outcome) -> None:
        """One more request finished (``drive``'s ``on_outcome``)."""
        with self._progress:
            self._done += 1
            self._progress.notify_all()

    def going(self) -> bool:
        """Whether the run must go on: an outage is still to come or under way, or fewer than ``every``
        requests have completed since the last one ended (False once the thread has given up)."""
        if not self._thread.is_alive():
            return False
        with self._progress:
            if len(self.outages) < self.kills or self.outages[-1].back_at is None:
                return True
            return self._done - self._since < self.every

    def start(self) -> TritonOutages:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> None:
        """No further kills; an outage under way is still finished (Triton restarted, the gateway back)."""
        self._stop.set()
        with self._progress:
            self._progress.notify_all()
        self._thread.join()

    def _run(self) -> None:
        for kill in range(1, self.kills + 1):
            with self._progress:
                self._progress.wait_for(lambda: self._done - self._since >= self.every or self._stop.is_set())
            if self._stop.is_set():
                return
            if not self._until(self.in_use):
                self.errors.append(f"the gateway was not scoring on Triton before kill {kill}")
                return
            outage = Outage(time.perf_counter())
            with self._progress:
                self.outages.append(outage)
            self.server.kill()
            time.sleep(self.down_s)
            try:
                self.server.start(timeout=self.wait_s)
            except TritonStartError as exc:
                self.errors.append(f"restart {kill} failed: {exc}")
                return
            outage.ready_at = time.perf_counter()
            if not self._until(self.in_use):
                self.errors.append(f"the gateway did not score on Triton again within {self.wait_s:.0f}s")
                return
            with self._progress:
                outage.back_at = time.perf_counter()
                self._since = self._done
        with self._progress:  # the run's tail, with Triton back
            self._progress.wait_for(lambda: self._done - self._since >= self.every or self._stop.is_set())

    def _until(self, condition: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + self.wait_s
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def report(
        self, outcomes: Sequence[Outcome], deadline_s: float, scorer: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The ``triton`` section of the chaos JSON; ``ok`` when every planned outage happened under traffic
        and ended with the gateway back on Triton while requests were still being sent, and every request in
        an outage was answered or cleanly refused in time. ``scorer``: the gateway's scorer state at the end
        (``/readyz``'s ``scorer``)."""
        met = [o for o in outcomes if any(outage.overlaps(o) for outage in self.outages)]
        last_back = self.outages[-1].back_at if self.outages else None
        after = sum(1 for o in outcomes if last_back is not None and o.started > last_back)
        kinds = Counter(o.kind for o in met)
        late = sum(1 for o in met if o.seconds > deadline_s + GRACE_S)
        statuses = Counter(str(o.status) for o in met)
        back = [o.back_at - o.killed_at for o in self.outages if o.back_at is not None]
        report: dict[str, Any] = {
            "planned_kills": self.kills,
            "kills": len(self.outages),
            "restarts": sum(1 for o in self.outages if o.ready_at is not None),
            "killed_at_s": [round(o.killed_at - self._started, 2) for o in self.outages],
            "down_s": [round(o.ready_at - o.killed_at, 2) for o in self.outages if o.ready_at is not None],
            "until_gateway_back_s": [round(s, 2) for s in back],
            "seconds_down": round(sum(back), 2),
            "outage_requests": len(met),
            "outage_answered": kinds["answered"],
            "outage_clean_errors": kinds["clean error"],
            "outage_unclean": kinds["unclean"],
            "outage_statuses": dict(sorted(statuses.items())),
            "outage_late": late,
            "requests_after_back": after,
            "scorer": dict(scorer or {}),
            "errors": self.errors,
        }
        report["ok"] = (
            report["kills"] == report["restarts"] == len(back) == self.kills
            and not self.errors
            and len(met) > 0
            and kinds["unclean"] == 0
            and late == 0
            and after > 0
        )
        return report
