"""CPU seconds that the gateway, the stub and the load generator spend per answered request in a bench run."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol


class Children(Protocol):
    @property
    def stub_pid(self) -> int: ...

    @property
    def gateway_pid(self) -> int: ...


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads) so far; None where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuShares:
    """Adds up, over measured stretches, the CPU seconds of the gateway, the stub and this process (the load
    generator). CPU time, unlike throughput, does not move when a shared host gives the machine less time."""

    def __init__(self) -> None:
        self.seconds = {"gateway": 0.0, "stub": 0.0, "load_client": 0.0}
        self.complete = True

    @contextmanager
    def measure(self, children: Children) -> Iterator[None]:
        pids = {"gateway": children.gateway_pid, "stub": children.stub_pid}
        start = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        client = time.process_time()
        yield
        self.seconds["load_client"] += time.process_time() - client
        for name, pid in pids.items():
            now, then = process_cpu_seconds(pid), start[name]
            if now is None or then is None:
                self.complete = False
            else:
                self.seconds[name] += now - then

    def per_request(self, answered: int) -> dict[str, float]:
        """Milliseconds per answered request by process, and their total; empty without /proc."""
        if not self.complete or answered == 0:
            return {}
        out = {name: round(seconds / answered * 1000, 2) for name, seconds in self.seconds.items()}
        out["total"] = round(sum(self.seconds.values()) / answered * 1000, 2)
        return out
