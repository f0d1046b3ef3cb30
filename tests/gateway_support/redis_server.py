"""A real ``redis-server`` (Debian's package) on a free loopback port with a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ladder.core.loopback import free_port, stop_process

START_TIMEOUT_S = 30.0


def redis_binary() -> str:
    """The server's path; a skip where it is not installed, a failure in CI (where it must run)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing in CI: scripts/test_deps.sh runs scripts/install_redis.sh")
        pytest.skip("redis-server is not installed: run scripts/install_redis.sh")
    return binary


def redis_url_at(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def start_redis(binary: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    """redis-server on ``port`` (no persistence, its log in ``directory``), once it answers PING; the test
    fails with the log's tail when it does not."""
    import redis

    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(directory), "--logfile", str(directory / "redis.log")]
    process = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            redis.Redis.from_url(redis_url_at(port)).ping()
            return process
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                log = directory / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                pytest.fail(f"redis-server did not start:\n{tail}")
            time.sleep(0.05)


@contextmanager
def running_redis(directory: Path) -> Iterator[str]:
    """Start redis-server (no persistence) and yield its URL; stopped on exit."""
    port = free_port()
    process = start_redis(redis_binary(), port, directory)
    try:
        yield redis_url_at(port)
    finally:
        stop_process(process)
