"""What the SQL stores share: engines for SQLite or PostgreSQL, tables made once by racing replicas, safe text."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

# PostgreSQL's text types cannot hold U+0000; SQLite's can. Both stores replace it so that one row reads
# back the same from either database.
NUL, NUL_STANDIN = "\x00", "\ufffd"
_SQLITE = "sqlite:///"


class SafeText(sa.types.TypeDecorator[str]):
    """Text with U+0000 replaced by U+FFFD on the way in (PostgreSQL refuses it in text columns)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return value.replace(NUL, NUL_STANDIN) if value is not None and NUL in value else value


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL: one given as such (``postgresql+psycopg://...``), or a SQLite file's for a plain path."""
    text = str(target)
    return text if "://" in text else f"{_SQLITE}{Path(text).expanduser().resolve()}"


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for a server database."""
    return Path(url.removeprefix(_SQLITE)) if url.startswith(_SQLITE) else None


def use_wal(engine: Engine, *, synchronous: str, busy_timeout_ms: int) -> None:
    """On SQLite, give every new connection write-ahead logging, ``synchronous`` and a busy timeout."""
    if engine.dialect.name != "sqlite":
        return

    def pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    sa.event.listen(engine, "connect", pragmas)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; a server database checks each pooled connection before use (restarts, failovers)."""
    if url.startswith("sqlite"):
        return sa.create_engine(url)
    return sa.create_engine(url, pool_pre_ping=True)


@contextmanager
def schema_transaction(engine: Engine, name: str) -> Iterator[Connection]:
    """A transaction in which to create tables and first rows, one process at a time.

    Replicas started together would otherwise race through ``CREATE TABLE`` on PostgreSQL (one of them fails
    on the catalogue's unique index); a transaction-scoped advisory lock keyed by ``name`` serialises them.
    SQLite serialises writers by itself.
    """
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(name)})
        yield conn


def _lock_key(name: str) -> int:
    """A stable signed 32-bit key for ``name`` (the same in every process, unlike ``hash``)."""
    return zlib.crc32(name.encode()) - (1 << 31)


def create_tables(engine: Engine, metadata: sa.MetaData, name: str) -> None:
    """``metadata.create_all`` under :func:`schema_transaction`."""
    with schema_transaction(engine, name) as conn:
        metadata.create_all(conn)
