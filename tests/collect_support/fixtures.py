"""Pytest fixtures for the collect tests (loaded with ``pytest_plugins``): the fake pool on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collect_support import world
from collect_support.harness import Loopback
from collect_support.pool_server import FakePool, fake_pool_app, pool_yaml
from ladder.bench.server_thread import ServerThread


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    fake = FakePool(world.answer)
    with ServerThread(fake_pool_app(fake)) as server:
        pool_file = tmp_path_factory.mktemp("pool") / "pool.yaml"
        pool_file.write_text(pool_yaml(server.url, world.MODELS), encoding="utf-8")
        running = Loopback(fake, server.url, pool_file)
        yield running
        fake.released.set()


@pytest.fixture
def fake(loopback: Loopback) -> Iterator[Loopback]:
    loopback.reset()
    yield loopback
    loopback.pool.released.set()
