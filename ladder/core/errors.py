"""The exceptions Ladder raises, in one place; each boundary (CLI, HTTP) translates them once."""

import sys
from collections.abc import Callable
from typing import Any


class LadderError(Exception):
    """Base class of every error Ladder reports to a user."""


class ConfigError(LadderError):
    """A pool or settings file is invalid; the message names the file, the key and the line."""


class DataError(LadderError):
    """A routing data file cannot be read: missing column, bad value, unknown format."""


class CheckpointError(LadderError):
    """A checkpoint is missing, corrupt, of an unknown version or made for a different pool."""


class PromptError(LadderError):
    """The text to route is unusable: empty, not valid UTF-8, or too large."""


class NoEligibleModelError(LadderError):
    """No model in the pool satisfies the request's constraints."""


class UnknownModelError(LadderError):
    """A request names a model that is not in the pool."""


class DataWarning(UserWarning):
    """Input was usable but not as given (ids renamed, costs absent): the CLI prints it as one line."""


class ConfigWarning(UserWarning):
    """Settings that work but not as evaluated (another encoder variant than the checkpoint's): one CLI line."""


class UpstreamError(LadderError):
    """An upstream LLM API failed: a 5xx, a refused or broken connection, a malformed reply.

    ``reason`` is a short label (``HTTP 503``, ``timeout``, ``ReadError``). ``retry_same`` says whether the
    same model may be tried again: only when the request provably did not reach it or was answered with an
    explicit error, never after a timeout or a reset, which may have reached the upstream (a second billed
    call). ``retry_after_s`` is the upstream's own ``Retry-After``, when it sent one.
    """

    def __init__(
        self,
        message: str,
        reason: str = "error",
        *,
        retry_same: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_same = retry_same
        self.retry_after_s = retry_after_s


class UpstreamTimeoutError(UpstreamError):
    """An upstream did not answer within the attempt's limit, or none did within the total deadline."""

    def __init__(self, message: str, reason: str = "timeout") -> None:
        super().__init__(message, reason)


class UpstreamRejectedError(LadderError):
    """An upstream refused the request itself (400, 413, 422): the client's error, passed back, not retried.

    ``body`` is the upstream's error envelope cut down to OpenAI's four fields.
    """

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def exit_code(run: Callable[[], object]) -> int:
    """A script's exit status: 0 when ``run`` returns, 1 (``error: …`` on stderr) when it raises a LadderError."""
    try:
        run()
    except LadderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
