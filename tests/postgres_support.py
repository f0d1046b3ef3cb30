"""A throwaway PostgreSQL cluster (Debian's package) on a free loopback port, one per test session.

Load it with ``pytest_plugins = ["postgres_support"]``: ``postgres_server`` starts the cluster once for the
session (initdb as the package's ``postgres`` user when run as root, which initdb requires) and stops and
removes it at the end; ``postgres_url`` gives each test a database of its own. Install the server with
scripts/install_postgres.sh; in CI a missing one fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ladder.core.loopback import free_port

START_TIMEOUT_S = 60.0
USER = "ladder"




def postgres_bindir() -> Path:
    """The newest installed server's binaries; a skip where none is, a failure in CI (where it must run)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing in CI: scripts/test_deps.sh runs scripts/install_postgres.sh")
        pytest.skip("PostgreSQL is not installed: run scripts/install_postgres.sh")
    return Path(found[-1]).parent


def _as_owner(command: list[str]) -> list[str]:
    """Run ``command`` as the ``postgres`` user when we are root (initdb and postgres refuse root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a fresh cluster (no fsync: its data is thrown away) and yield a server URL without a database."""
    bindir = postgres_bindir()
    directory = Path(tempfile.mkdtemp(prefix="ladder-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data, log, port = directory / "data", directory / "server.log", free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync"]
    done = subprocess.run(_as_owner([*initdb, "--locale", "C"]), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{done.stdout}\n{done.stderr}")
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log)]
    subprocess.run(_as_owner([*pg_ctl, "-o", options, "-w", "-t", str(int(START_TIMEOUT_S)), "start"]),
                   capture_output=True, check=False)  # fmt: skip
    url = f"postgresql+psycopg://{USER}@127.0.0.1:{port}"
    try:
        _wait_until_accepting(url, log)
        yield url
    finally:
        subprocess.run(_as_owner([*pg_ctl, "-m", "fast", "stop"]), capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_until_accepting(url: str, log: Path) -> None:
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            psycopg.connect(plain, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
                pytest.fail(f"PostgreSQL did not start:\n{tail}")
            time.sleep(0.1)


def create_database(server_url: str) -> str:
    """A new empty database on the server; its SQLAlchemy URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    plain = server_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The session's cluster: ``postgresql+psycopg://ladder@127.0.0.1:PORT`` (append a database name)."""
    with running_postgres() as url:
        yield url


@pytest.fixture()
def postgres_url(postgres_server: str) -> str:
    """A database of this test's own on the session's cluster."""
    return create_database(postgres_server)
