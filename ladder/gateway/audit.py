"""The audit log: one JSON line per scored request (a ``DecisionRecord``); prompts only when enabled, redacted."""

from __future__ import annotations

import json
import queue
import re
import sys
import threading
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ladder.core.decision_record import DecisionRecord

REDACTED = "[REDACTED]"


class LineWritten:
    """Whether the request in whose context it was made has had its audit line written."""

    def __init__(self) -> None:
        self.written = False


_THIS_REQUEST: ContextVar[LineWritten | None] = ContextVar("ladder_audit_line", default=None)


@dataclass(frozen=True)
class _Queued:
    time: str
    record: DecisionRecord
    prompt: str | None


class AuditLog:
    """Appends decision records to a file (``-`` means stdout); a no-op when no destination is set.

    A line is ``{"time": ..., **record.to_line(), "prompt": ...}`` (``prompt`` only when prompts are kept).
    ``write`` only puts the record on a queue: a writer thread serialises it and writes the line, so the
    event loop never waits on the disk. ``close`` writes what is queued, then closes the file.
    """

    def __init__(self, destination: str | None, include_prompts: bool, redactions: Sequence[str]) -> None:
        self.include_prompts = include_prompts
        self._patterns = [re.compile(p) for p in redactions]
        self._own = False
        self._out: IO[str] | None = None
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        if destination == "-":
            self._out = sys.stdout
        elif destination:
            path = Path(destination)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out = path.open("a", encoding="utf-8")
            self._own = True
        if self._out is not None:
            self._writer = threading.Thread(target=self._write_lines, args=(self._out,), daemon=True)
            self._writer.name = "ladder-audit-writer"
            self._writer.start()

    @property
    def enabled(self) -> bool:
        return self._out is not None

    def redact(self, text: str) -> str:
        for pattern in self._patterns:
            text = pattern.sub(REDACTED, text)
        return text

    @staticmethod
    def expect_line() -> LineWritten:
        """Start watching the current request: the returned flag turns true when its line is written."""
        line = LineWritten()
        _THIS_REQUEST.set(line)
        return line

    def write(self, record: DecisionRecord, prompt: str | None = None) -> None:
        """Queue one record (``time`` is taken now); the prompt is kept only if prompts are enabled."""
        if (current := _THIS_REQUEST.get()) is not None:
            current.written = True
        if self._out is None:
            return
        kept = prompt if self.include_prompts else None  # redacted on the writer thread
        self._queue.put(_Queued(datetime.now(UTC).isoformat(timespec="milliseconds"), record, kept))

    def _write_lines(self, out: IO[str]) -> None:
        while True:
            line = self._queue.get()
            batch = [line]
            while not self._queue.empty() and batch[-1] is not None:  # write what has piled up at once
                batch.append(self._queue.get())
            texts = []
            for item in batch:
                if item is None:
                    break
                texts.append(json.dumps(self._line(item), ensure_ascii=False, separators=(",", ":")) + "\n")
            if texts:
                out.write("".join(texts))
                out.flush()
            if batch[-1] is None:
                return

    def _line(self, item: _Queued) -> dict[str, Any]:
        line = {"time": item.time, **item.record.to_line()}
        if item.prompt is not None:
            line["prompt"] = self.redact(item.prompt)
        return line

    def close(self) -> None:
        """Write every queued record, stop the writer and close the file (idempotent)."""
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                self._queue.put(None)
                writer.join()
            if self._own and self._out is not None:
                self._out.close()
            self._out = None
