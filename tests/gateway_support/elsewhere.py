"""Fixtures for gateways whose pool points at another upstream (a raw, TLS or proxied one) on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_support.common import UPSTREAM_KEY, UPSTREAM_KEY_ENV, RunningGateway, serve_gateway
from gateway_support.pool import write_pool
from ladder.bench.faulty_upstream import RawUpstream
from ladder.bench.server_thread import ServerThread
from ladder.core.pool import load_pool
from ladder.core.router import Router


@pytest.fixture(scope="session")
def raw_server() -> Iterator[RawUpstream]:
    with RawUpstream() as server:
        yield server


@pytest.fixture()
def raw(raw_server: RawUpstream) -> RawUpstream:
    """The raw upstream, its scripts and counts cleared: every model answers normally."""
    raw_server.clear()
    return raw_server


@pytest.fixture()
def gateway_at(
    test_pool: Path, router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., RunningGateway]]:
    """``gateway_at(url, **settings)``: a gateway on loopback whose three models live at ``url``."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    running: list[ServerThread] = []

    def start(url: str, **overrides: Any) -> RunningGateway:
        path = write_pool(
            tmp_path / f"pool-{len(running)}.yaml", url, test_pool.parent / "checkpoint", UPSTREAM_KEY_ENV
        )
        routed = router.with_pool(load_pool(path))
        return serve_gateway(path, routed, running, **overrides)

    yield start
    for server in running:
        server.stop()
