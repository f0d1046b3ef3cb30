"""Pytest fixtures for the gateway tests (loaded with ``pytest_plugins``): real servers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_support.common import API_KEY, UPSTREAM_KEY, UPSTREAM_KEY_ENV, RunningGateway
from gateway_support.pool import BIASES, NAMES, write_pool
from gateway_support.upstream import FakeUpstream, fake_upstream_app
from ladder.bench.server_thread import ServerThread
from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.settings import load_settings
from ladder.training.prior_checkpoint import make_checkpoint


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[tuple[FakeUpstream, ServerThread]]:
    state = FakeUpstream()
    with ServerThread(fake_upstream_app(state)) as server:
        yield state, server


@pytest.fixture()
def upstream(upstream_server: tuple[FakeUpstream, ServerThread]) -> FakeUpstream:
    """The fake upstream, reset: every model answers normally."""
    state, _ = upstream_server
    state.reset()
    return state


@pytest.fixture(scope="session")
def test_pool(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: tuple[FakeUpstream, ServerThread]
) -> Path:
    directory = tmp_path_factory.mktemp("gateway")
    checkpoint = directory / "checkpoint"
    make_checkpoint(checkpoint, NAMES, BIASES)
    return write_pool(directory / "pool.yaml", upstream_server[1].url, checkpoint, UPSTREAM_KEY_ENV)


@pytest.fixture(scope="session")
def router(test_pool: Path) -> Router:
    return Router.from_pool(load_pool(test_pool))


@pytest.fixture()
def start_gateway(
    test_pool: Path, router: Router, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways with settings overrides (stopped after the test); the upstream key is in the env."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    running: list[ServerThread] = []

    def start(**overrides: Any) -> RunningGateway:
        tracer_provider = overrides.pop("tracer_provider", None)
        values: dict[str, Any] = {
            "pool": test_pool,
            "api_keys": [API_KEY],
            "attempt_timeout_s": 5.0,
            "deadline_s": 10.0,
            "retries": 0,
            "retry_backoff_s": 0.01,
            **overrides,
        }
        settings = load_settings(None, **values)
        app = create_app(settings, router=router, tracer_provider=tracer_provider)
        server = ServerThread(app).start()
        running.append(server)
        return RunningGateway(server.url, app, settings)

    yield start
    for server in running:
        server.stop()


@pytest.fixture()
def gateway(start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    """A gateway with the default test settings."""
    return start_gateway()
