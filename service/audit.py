"""The audit log: one JSON line per decision; prompt text only when enabled, and then redacted."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

REDACTED = "[REDACTED]"


class AuditLog:
    """Appends decision records to a file (``-`` means stdout); a no-op when no destination is set."""

    def __init__(self, destination: str | None, include_prompts: bool, redactions: Sequence[str]) -> None:
        self.include_prompts = include_prompts
        self._patterns = [re.compile(p) for p in redactions]
        self._lock = threading.Lock()
        self._own = False
        self._out: IO[str] | None = None
        if destination == "-":
            self._out = sys.stdout
        elif destination:
            path = Path(destination)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out = path.open("a", encoding="utf-8")
            self._own = True

    @property
    def enabled(self) -> bool:
        return self._out is not None

    def redact(self, text: str) -> str:
        for pattern in self._patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def write(self, record: dict[str, Any], prompt: str | None = None) -> None:
        """Write one record (``time`` is added); the prompt is kept only if prompts are enabled."""
        if self._out is None:
            return
        line: dict[str, Any] = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **record}
        if self.include_prompts and prompt is not None:
            line["prompt"] = self.redact(prompt)
        text = json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()

    def close(self) -> None:
        if self._own and self._out is not None:
            self._out.close()
        self._out = None
