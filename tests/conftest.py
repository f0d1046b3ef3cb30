"""Suite-wide settings and fixtures: under CI, hypothesis draws the same examples on every run (no flakes from
chance); the servers and built encoder several modules share (each imported only by the tests that ask)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from ladder.export.triton_server import TritonServer

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def e5_dir() -> Path:
    """The built multilingual-e5-small encoder (a no-op once built at setup)."""
    from ladder.export.encoder_build import build_encoder  # imports torch: only for the tests that ask

    return build_encoder("multilingual-e5-small")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server for one module; its URL."""
    from gateway_support.redis_server import running_redis

    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture()
def redis_url(redis_server: str) -> str:
    """The module's redis-server, emptied for this test."""
    import redis

    redis.Redis.from_url(redis_server).flushall()
    return redis_server


@pytest.fixture(scope="module")
def cpu_triton() -> Iterator[TritonServer]:
    """A tritonserver over the cpu-flavour repository, for one module (skipped where none is installed)."""
    import triton_helpers as th

    started = th.server_or_skip(th.cpu_repository())
    yield started
    started.stop()
