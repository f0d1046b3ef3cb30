"""Structured logs (one JSON line per request, never a prompt or a key) and the audit log's writer thread."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from gateway_support.common import API_KEY, AUTH, UPSTREAM_KEY, RunningGateway
from gateway_support.upstream import FakeUpstream

from ladder.core.decision_record import DecisionRecord
from ladder.gateway.audit import AuditLog
from ladder.gateway.logs import REQUEST_LOGGER, JsonFormatter

pytest_plugins = ["gateway_support.fixtures"]

PROMPT = "Tell nobody: the launch code of Project Heron is 7781-QZ"


@pytest.fixture()
def captured() -> Iterator[io.StringIO]:
    """What the gateway's loggers write, through the formatter ``ladder serve`` uses."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("ladder", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield out
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def request_log(out: io.StringIO, request_id: str) -> dict[str, Any]:
    (record,) = [
        r for r in records(out) if r["logger"] == REQUEST_LOGGER and r.get("request_id") == request_id
    ]
    return record


def test_one_json_line_per_request_without_prompts_or_keys(
    gateway: RunningGateway, upstream: FakeUpstream, captured: io.StringIO
) -> None:
    chat = {"model": "ladder-0", "messages": [{"role": "user", "content": PROMPT}]}
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as http:
        upstream.set("vision-pro", "fail")
        fell_back = http.post("/v1/chat/completions", json=chat, headers={"x-request-id": "client-id-1"})
        upstream.set("mid-cloud", "fail")
        upstream.set("small-local", "fail")
        failed = http.post("/v1/chat/completions", json=chat)
        invalid = http.post("/v1/chat/completions", json={**chat, "temperature": PROMPT})
        messages = http.post("/v1/messages", json={**chat, "max_tokens": 8, "stream": True})
        unauthorised = http.post("/v1/route", json=chat, headers={"authorization": f"Bearer {PROMPT}"})
    assert [r.status_code for r in (fell_back, failed, invalid, messages, unauthorised)] == [
        200,
        502,
        400,
        502,
        401,
    ]

    ok = request_log(captured, fell_back.headers["x-ladder-request-id"])  # the server's id everywhere
    assert ok["correlation_id"] == "client-id-1"  # the client's id is kept beside it, never as it
    assert ok["status"] == 200 and ok["model"] == "mid-cloud" and ok["routed_model"] == "vision-pro"
    assert ok["fallback"].startswith("vision-pro (") and ok["latency_ms"] > 0 and ok["level"] == "info"
    assert ok["path"] == "/v1/chat/completions" and ok["method"] == "POST"

    bad_gateway = request_log(captured, failed.headers["x-ladder-request-id"])
    assert bad_gateway["status"] == 502 and bad_gateway["level"] == "error"
    assert bad_gateway["error"] == {
        "type": "upstream_error",
        "code": "upstream_failure",
        "exception": "UpstreamError",
    }
    chain = bad_gateway["exception"]
    assert chain[0]["type"].endswith("UpstreamError") and "small-local" in chain[0]["message"]
    assert all("at" in link for link in chain)

    refused = request_log(captured, invalid.headers["x-ladder-request-id"])
    assert (
        refused["status"] == 400
        and refused["error"]["code"] == "invalid_request"
        and "exception" not in refused
    )
    assert request_log(captured, messages.headers["x-ladder-request-id"])["status"] == 502
    assert request_log(captured, unauthorised.headers["x-ladder-request-id"])["status"] == 401

    text = captured.getvalue()
    assert len(records(captured)) >= 5
    for secret in (PROMPT, "Project Heron", "7781-QZ", API_KEY, UPSTREAM_KEY):
        assert secret not in text, secret


def test_the_formatter_keeps_third_party_messages_out() -> None:
    """A pydantic or HTTP error can quote the input; only Ladder's own messages are logged, redacted."""
    formatter = JsonFormatter(redactions=[r"Heron"])
    try:
        try:
            raise ValueError(f"input_value={PROMPT!r}")
        except ValueError as exc:
            from ladder.gateway.errors import InvalidRequestError

            raise InvalidRequestError("about Heron with key sk-live-0123456789abcdef") from exc
    except InvalidRequestError as exc:
        record = logging.LogRecord(
            "ladder.request", logging.ERROR, __file__, 1, "failed", None, (type(exc), exc, None)
        )
    line = json.loads(formatter.format(record))
    outer, cause = line["exception"]
    assert outer["message"] == "about [REDACTED] with key [REDACTED]"
    assert cause == {"type": "builtins.ValueError", "at": cause["at"]} and "7781" not in json.dumps(line)


def test_audit_lines_are_written_off_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    class Recording(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writers: set[str] = set()

        def write(self, text: str) -> int:
            self.writers.add(threading.current_thread().name)
            return super().write(text)

    stream = Recording()
    monkeypatch.setattr(sys, "stdout", stream)
    log = AuditLog("-", include_prompts=True, redactions=[r"\d{4}-QZ"])
    for i in range(500):
        log.write(DecisionRecord(request_id=str(i), endpoint="route", chosen_model=None), prompt=PROMPT)
    log.close()
    log.close()  # idempotent
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == [str(i) for i in range(500)]
    assert lines[0]["prompt"].endswith("is [REDACTED]")
    assert stream.writers == {"ladder-audit-writer"}


def test_exactly_one_audit_line_per_request_under_concurrency(
    start_audited: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_audited()
    upstream.set("mid-cloud", "fail")
    calls: list[tuple[str, dict[str, Any]]] = []
    for i in range(12):
        chat = {"model": f"ladder-{i % 2}", "messages": [{"role": "user", "content": f"question {i}"}]}
        calls += [
            ("/v1/chat/completions", chat),
            ("/v1/chat/completions", {**chat, "stream": True}),
            ("/v1/messages", {**chat, "max_tokens": 8, "stream": i % 2 == 0}),
            ("/v1/route", chat),
        ]

    def call(path_body: tuple[str, dict[str, Any]]) -> str:
        with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as http:
            with http.stream("POST", path_body[0], json=path_body[1]) as response:
                response.read()
            assert response.status_code == 200, response.text
            return response.headers["x-ladder-request-id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(call, calls))
    lines = gateway.audit_lines()
    assert len(lines) == len(calls) == len(set(ids))
    assert sorted(line["request_id"] for line in lines) == sorted(ids)
