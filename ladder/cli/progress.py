"""Progress reporting for long CLI work: a rich bar per stage on a terminal, plain lines in logs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True)
Report = Callable[[str, int, int], None]
LOG_EVERY_SECONDS = 10.0


@contextmanager
def _bars() -> Iterator[Report]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr) as progress:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield report


@contextmanager
def _lines() -> Iterator[Report]:
    started = time.monotonic()
    last: dict[str, float] = {}
    first: dict[str, tuple[float, int]] = {}  # when each stage was first reported, and its count then

    def report(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done in (0, total) or now - last.get(stage, 0.0) >= LOG_EVERY_SECONDS:
            last[stage] = now
            first.setdefault(stage, (now, done))
            t0, d0 = first[stage]
            eta = f", ETA {(now - t0) * (total - done) / (done - d0):.0f}s" if total > done > d0 else ""
            line = f"[{now - started:6.1f}s] {stage}: {done}/{total}{eta}"
            stderr.print(line, highlight=False, markup=False)

    yield report


@contextmanager
def stage_progress() -> Iterator[Report]:
    """Yield a ``(stage, done, total)`` callback: live bars on a terminal, a line every 10 s otherwise."""
    with _bars() if stderr.is_terminal else _lines() as report:
        yield report
