"""Structured logs: one JSON object per line, never a prompt or a key.

Every record carries ``time``, ``level``, ``logger`` and ``message``, plus the fields a caller passes in
``extra`` (the request log: ``request_id``, ``method``, ``path``, ``status``, ``latency_ms``, ``model``,
``routed_model``, ``fallback``, ``error``). An exception becomes ``exception``: its chain, outermost first,
each link with its type, where it was raised and, for Ladder's own errors only, its message (redacted).
Third-party messages are left out: a pydantic error quotes the input, an HTTP error can quote a body.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import re
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

from ladder.core.errors import LadderError

REQUEST_LOGGER = "ladder.request"
FIELDS = (
    "request_id",
    "correlation_id",
    "method",
    "path",
    "status",
    "latency_ms",
    "model",
    "routed_model",
    "fallback",
    "attempts",
    "error",
)
MAX_MESSAGE = 500
REDACTED = "[REDACTED]"
# API keys of the usual shapes and bearer tokens, whatever else is configured
SECRET_SHAPES = (
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{8,}",
    r"(?i)bearer\s+\S+",
    r"(?i)(api[_-]?key|authorization)([\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+",
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; messages pass through the redaction patterns."""

    def __init__(self, redactions: Sequence[str] = ()) -> None:
        super().__init__()
        self._patterns = [re.compile(p) for p in (*SECRET_SHAPES, *redactions)]

    def redact(self, text: str) -> str:
        for pattern in self._patterns:
            text = pattern.sub(REDACTED, text)
        return text[:MAX_MESSAGE]

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["exception"] = self.chain(record.exc_info[1])
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)

    def chain(self, exc: BaseException) -> list[dict[str, Any]]:
        """The exception and its causes (``raise ... from``) or contexts, outermost first."""
        links: list[dict[str, Any]] = []
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen and len(links) < 8:
            seen.add(id(current))
            link: dict[str, Any] = {"type": f"{type(current).__module__}.{type(current).__qualname__}"}
            frames = traceback.extract_tb(current.__traceback__)
            if frames:
                last = frames[-1]
                link["at"] = f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"
            if isinstance(current, LadderError):
                link["message"] = self.redact(str(current))
            links.append(link)
            current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        return links


class BackgroundStreamHandler(logging.handlers.QueueHandler):
    """A stream handler whose formatting and writing happen on a thread: the event loop never waits on a
    pipe. Records are queued as they are; ``close`` (run by ``logging.shutdown``) writes what is left."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(queue.SimpleQueue())
        self.target = logging.StreamHandler(stream)
        self.listener = logging.handlers.QueueListener(self.queue, self.target)
        self.listener.start()
        self._stopped = False

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted on the listener's thread, exception and all

    def close(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.listener.stop()
        self.target.close()
        super().close()


def logging_config(level: str = "info", redactions: Sequence[str] = ()) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (uvicorn's ``log_config``): every logger as JSON on stderr."""
    handler = {"()": BackgroundStreamHandler, "formatter": "json", "stream": "ext://sys.stderr"}
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "redactions": list(redactions)}},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": upper, "propagate": False}
            for name in ("ladder", "uvicorn", "uvicorn.error", "uvicorn.access", "service")
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
