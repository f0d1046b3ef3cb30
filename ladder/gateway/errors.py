"""Gateway exceptions and the one mapping from exception classes to HTTP statuses and error envelopes."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ladder.core.errors import LadderError, NoEligibleModelError, PromptError, UnknownModelError
from ladder.core.errors import UpstreamError as UpstreamError  # upstream errors live in the core, mapped here
from ladder.core.errors import UpstreamRejectedError as UpstreamRejectedError
from ladder.core.errors import UpstreamTimeoutError as UpstreamTimeoutError
from ladder.gateway.json_body import JsonAnswer


class GatewayError(LadderError):
    """Base of the errors the gateway itself raises; ``param`` names the offending request field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


REQUEST_FAILURES = (GatewayError, UpstreamError, UpstreamRejectedError, NoEligibleModelError)
"""The failures a routed request is recorded with (its decision and the error's name) before the client gets
them; anything else releases the budget hold unrecorded. Plain chat and the cascade both catch these."""


class InvalidRequestError(GatewayError):
    """The request body is malformed or asks for something impossible."""


class AuthenticationError(GatewayError):
    """No or a wrong client API key."""


class PayloadTooLargeError(GatewayError):
    """The request body exceeds ``max_body_bytes``."""


class ClientDisconnected(GatewayError):
    """The client closed the connection before the answer was ready (logged as 499, never sent)."""


class RequestNotFoundError(GatewayError):
    """A request id the gateway has no record of (``POST /v1/feedback``)."""


class ScorerUnavailableError(GatewayError):
    """The scorer failed or is not loaded."""


class StateUnavailableError(GatewayError):
    """The shared state is unreachable and the gateway is set to refuse what it cannot enforce (503)."""


class FeedbackConflictError(GatewayError):
    """Feedback for a request that already has the client's feedback (409)."""


class OverloadedError(GatewayError):
    """The scoring queue is full: the client should retry after ``retry_after_s`` seconds (429)."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimitError(OverloadedError):
    """A client key is over its request rate or its spend budget (429 with ``Retry-After``, by ``code``)."""

    def __init__(self, message: str, retry_after_s: float, code: str = "rate_limit_exceeded") -> None:
        super().__init__(message, max(1, math.ceil(retry_after_s)))
        self.code = code


@dataclass(frozen=True)
class ErrorKind:
    """How one exception class is answered."""

    status: int
    type: str
    code: str | None


# How each status an error is answered with is named: (OpenAI error type, Anthropic error type).
STATUS_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("authentication_error", "authentication_error"),
    404: ("invalid_request_error", "not_found_error"),
    409: ("invalid_request_error", "invalid_request_error"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_error"),
    499: ("client_closed_request", "api_error"),
    500: ("server_error", "api_error"),
    502: ("upstream_error", "api_error"),
    503: ("service_unavailable", "overloaded_error"),
    504: ("upstream_error", "api_error"),
}


def answered_as(status: int, code: str | None) -> ErrorKind:
    """The kind of an error answered with ``status`` (one of ``STATUS_TYPES``, which names its type)."""
    return ErrorKind(status, STATUS_TYPES[status][0], code)


# The code each exception class is answered with, by status. Order matters: the first matching class wins,
# so subclasses come before their bases (an upstream timeout before other upstream errors, LadderError last).
ERROR_CODES: dict[int, dict[type[BaseException], str | None]] = {
    400: {
        RequestValidationError: "invalid_request",
        PromptError: "invalid_prompt",
        InvalidRequestError: "invalid_request",
        NoEligibleModelError: "no_eligible_model",
    },
    401: {AuthenticationError: "invalid_api_key"},
    404: {UnknownModelError: "model_not_found", RequestNotFoundError: "request_not_found"},
    409: {FeedbackConflictError: "feedback_exists"},
    413: {PayloadTooLargeError: "request_too_large"},
    429: {OverloadedError: "overloaded"},
    499: {ClientDisconnected: None},
    503: {ScorerUnavailableError: "scorer_unavailable", StateUnavailableError: "state_unavailable"},
    504: {UpstreamTimeoutError: "upstream_timeout"},
    502: {UpstreamError: "upstream_failure"},
    500: {LadderError: None},
}
ERROR_KINDS: tuple[tuple[type[BaseException], ErrorKind], ...] = tuple(
    (cls, answered_as(status, code)) for status, codes in ERROR_CODES.items() for cls, code in codes.items()
)


def error_kind(exc: BaseException) -> ErrorKind:
    """The status, type and code for an exception (500 for anything unexpected)."""
    if isinstance(exc, RateLimitError):
        return answered_as(429, exc.code)
    if isinstance(exc, UpstreamRejectedError):
        return ErrorKind(exc.status, "invalid_request_error", "upstream_rejected")
    if isinstance(exc, StarletteHTTPException):
        return ErrorKind(
            exc.status_code, "invalid_request_error" if exc.status_code < 500 else "server_error", None
        )
    for cls, kind in ERROR_KINDS:
        if isinstance(exc, cls):
            return kind
    return answered_as(500, None)


TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "function-after", "literal"})


def _is_type_tag(part: Any) -> bool:
    """Pydantic names the branch of a union in an error's location (``str``, ``list[...]``): not a field."""
    return part == "body" or (isinstance(part, str) and (part in TYPE_TAGS or "[" in part))


def describe_validation(errors: Sequence[Any]) -> tuple[str, str | None]:
    """One message and ``param`` for a list of pydantic errors: the deepest one, which names the field that
    is wrong (``messages.0.content.0.image.source``) rather than a union branch that did not fit."""
    if not errors:
        return "invalid request", None
    worst = max(errors, key=lambda e: len(e.get("loc", ())))
    param = ".".join(str(p) for p in worst.get("loc", ()) if not _is_type_tag(p)) or None
    message = str(worst.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{param + ': ' if param else ''}{message}", param


def _message(exc: BaseException) -> tuple[str, str | None]:
    if isinstance(exc, RequestValidationError):
        return describe_validation(exc.errors())
    if isinstance(exc, StarletteHTTPException):
        return str(exc.detail), None
    if isinstance(exc, GatewayError):
        return str(exc), exc.param
    if isinstance(exc, LadderError):
        return str(exc), None
    return "internal error", None


def openai_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI envelope ``{"error": {message, type, param, code}}`` for an exception."""
    kind = error_kind(exc)
    message, param = _message(exc)
    if isinstance(exc, UpstreamRejectedError) and exc.body and isinstance(exc.body.get("error"), dict):
        return kind.status, exc.body
    return kind.status, {"error": {"message": message, "type": kind.type, "param": param, "code": kind.code}}


def anthropic_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and Anthropic envelope ``{"type": "error", "error": {type, message}}``."""
    status, body = openai_error(exc)
    message = body["error"].get("message", "") if isinstance(body.get("error"), dict) else ""
    kind = STATUS_TYPES[status][1] if status in STATUS_TYPES else "api_error"
    return status, {"type": "error", "error": {"type": kind, "message": message}}


def error_response(request: Request | None, exc: BaseException) -> Response:
    """The error as a JSON response in the envelope of the API the request used."""
    anthropic = request is not None and request.url.path.startswith("/v1/messages")
    status, body = (anthropic_error if anthropic else openai_error)(exc)
    headers = {"www-authenticate": "Bearer"} if status == 401 else {}
    if isinstance(exc, OverloadedError):
        headers["retry-after"] = str(exc.retry_after_s)
    return JsonAnswer(body, status_code=status, headers=headers)


def sse_error_event(exc: BaseException, anthropic: bool = False) -> bytes:
    """A stream's closing error event (never a silent truncation)."""
    _, body = (anthropic_error if anthropic else openai_error)(exc)
    data = json.dumps(body, separators=(",", ":"))
    return f"event: error\ndata: {data}\n\n".encode() if anthropic else f"data: {data}\n\n".encode()


ERROR_STATE = "ladder_error"  # where the handler leaves (exception, traceback) it answered, in scope["state"]


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through ``error_response``."""

    async def handle(request: Request, exc: Exception) -> Response:
        # For the request log: starlette clears the traceback once the handler has answered.
        request.scope.setdefault("state", {})[ERROR_STATE] = (exc, exc.__traceback__)
        response = error_response(request, exc)
        gateway = getattr(request.app.state, "gateway", None)
        if gateway is not None:
            gateway.metrics.errors.labels(str(response.status_code), str(error_kind(exc).code)).inc()
        return response

    for cls in (RequestValidationError, StarletteHTTPException, LadderError, Exception):
        app.add_exception_handler(cls, handle)
