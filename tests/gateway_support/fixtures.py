"""Pytest fixtures for the gateway tests (loaded with ``pytest_plugins``): real servers on loopback."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_support.answers_upstream import AnswersUpstream, answers_upstream_app
from gateway_support.common import (
    UPSTREAM_KEY,
    UPSTREAM_KEY_ENV,
    RunningGateway,
    reset_fake,
    serve_fake,
    serve_gateway,
)
from gateway_support.pool import shared_pool
from gateway_support.upstream import FakeUpstream, fake_upstream_app
from ladder.bench.server_thread import ServerThread
from ladder.core.pool import load_pool
from ladder.core.router import Router


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[tuple[FakeUpstream, ServerThread]]:
    yield from serve_fake(FakeUpstream(), fake_upstream_app)


@pytest.fixture()
def upstream(upstream_server: tuple[FakeUpstream, ServerThread]) -> FakeUpstream:
    """The fake upstream, reset: every model answers normally."""
    return reset_fake(upstream_server)


@pytest.fixture(scope="session")
def session_pool(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: tuple[FakeUpstream, ServerThread]
) -> Path:
    return shared_pool(tmp_path_factory.mktemp("gateway"), upstream_server[1].url, UPSTREAM_KEY_ENV)


@pytest.fixture(scope="module")
def test_pool(session_pool: Path) -> Path:
    """The pool file the module's gateways serve: the shared one, unless the module overrides it."""
    return session_pool


@pytest.fixture(scope="session")
def answers_server() -> Iterator[tuple[AnswersUpstream, ServerThread]]:
    """The fake upstream that answers with text, token logprobs and self-check replies (the cascade tests)."""
    yield from serve_fake(AnswersUpstream(), answers_upstream_app)


@pytest.fixture()
def answers(answers_server: tuple[AnswersUpstream, ServerThread]) -> AnswersUpstream:
    """The answers fake, reset."""
    return reset_fake(answers_server)


@pytest.fixture(scope="session")
def loaded_router(session_pool: Path) -> Router:
    """The shared pool's router, loaded once: loading the encoder takes seconds, and every test pool is written
    over the same prior checkpoint."""
    return Router.from_pool(load_pool(session_pool))


@pytest.fixture(scope="module")
def router(test_pool: Path, loaded_router: Router) -> Router:
    """The loaded checkpoint and scorer deciding over the module's ``test_pool``."""
    return loaded_router.with_pool(load_pool(test_pool))


@pytest.fixture()
def start_gateway(
    test_pool: Path, router: Router, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways with settings overrides (stopped after the test); the upstream key is in the env."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    running: list[ServerThread] = []

    def start(**overrides: Any) -> RunningGateway:
        return serve_gateway(test_pool, router, running, **overrides)

    yield start
    for server in running:
        server.stop()


@pytest.fixture()
def start_audited(start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> Callable[..., RunningGateway]:
    """Start gateways that write their audit log to ``tmp_path`` (read it with ``audit_lines``)."""
    return functools.partial(start_gateway, audit_log=str(tmp_path / "audit.jsonl"))


@pytest.fixture()
def gateway(start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    """A gateway with the default test settings."""
    return start_gateway()
