"""Constants and handles shared by the gateway tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import openai
from fastapi import FastAPI
from starlette.types import ASGIApp

from ladder.bench.server_thread import ServerThread
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.settings import Settings, load_settings

API_KEY = "test-key-0123456789"
AUTH = {"authorization": f"Bearer {API_KEY}"}  # the test client's credentials, as request headers
UPSTREAM_KEY_ENV = "LADDER_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-secret-value-42"
# what a test gateway runs with unless the test says otherwise: one key, short timeouts, no retries
TEST_SETTINGS: dict[str, Any] = {
    "api_keys": [API_KEY],
    "attempt_timeout_s": 5.0,
    "deadline_s": 10.0,
    "retries": 0,
    "retry_backoff_s": 0.01,
}


@dataclass
class RunningGateway:
    """A gateway served by uvicorn on loopback."""

    url: str
    app: FastAPI
    settings: Settings

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=API_KEY, max_retries=0, **kwargs)

    @property
    def audit_path(self) -> Path:
        assert self.settings.audit_log is not None, "started without an audit log"
        return Path(self.settings.audit_log)

    def audit_lines(self, count: int = 0) -> list[dict[str, Any]]:
        """The audit log's lines, once it holds at least ``count`` (a refused request's record can be queued just
        after its answer went out) or after 10 s; they are written off the event loop: closing flushes them."""
        deadline = time.monotonic() + 10.0
        while count and time.monotonic() < deadline:
            if self.audit_path.exists() and len(self.audit_path.read_text(encoding="utf-8").splitlines()) >= count:
                break
            time.sleep(0.02)
        self.app.state.gateway.audit.close()
        return [json.loads(line) for line in self.audit_path.read_text(encoding="utf-8").splitlines()]


def streamed_lines(url: str, body: dict[str, Any]) -> list[str]:
    """``body`` streamed from the gateway endpoint ``url`` with the test key: the answer's non-empty lines."""
    with httpx.stream("POST", url, headers=AUTH, json=body) as response:
        assert response.status_code == 200, response.read()
        return [line for line in response.iter_lines() if line]


def serve_gateway(pool: Path, router: Router, running: list[ServerThread], **overrides: Any) -> RunningGateway:
    """A gateway on loopback over ``pool`` and ``router`` with ``TEST_SETTINGS`` and ``overrides`` (and a
    ``tracer_provider``, if given); its server is appended to ``running`` for the caller to stop."""
    tracer_provider = overrides.pop("tracer_provider", None)
    settings = load_settings(None, **{"pool": pool, **TEST_SETTINGS, **overrides})
    app = create_app(settings, router=router, tracer_provider=tracer_provider)
    server = ServerThread(app).start()
    running.append(server)
    return RunningGateway(server.url, app, settings)


class Resettable(Protocol):
    def reset(self) -> None: ...


FakeT = TypeVar("FakeT", bound=Resettable)


def serve_fake(state: FakeT, app: Callable[[FakeT], ASGIApp]) -> Iterator[tuple[FakeT, ServerThread]]:
    """A fake upstream's ``state`` served on loopback, for a fixture to ``yield from`` (stopped after it)."""
    with ServerThread(app(state)) as server:
        yield state, server


def reset_fake(served: tuple[FakeT, ServerThread]) -> FakeT:
    """The served fake's state, reset for the next test: every model answers normally."""
    state, _ = served
    state.reset()
    return state
