"""What the SQL stores share: a path names a SQLite file, a URL is taken as given, SQLite runs in WAL mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ladder.core.sqlstore import database_url, make_engine, sqlite_file, use_wal


def test_a_path_is_a_sqlite_file_and_a_url_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert database_url("runs/answers.db") == f"sqlite:///{tmp_path / 'runs' / 'answers.db'}"
    assert database_url("~/traffic.db") == f"sqlite:///{tmp_path / 'home' / 'traffic.db'}"
    url = "postgresql+psycopg://ladder@127.0.0.1:5432/ladder"
    assert database_url(url) == url
    assert sqlite_file(database_url("runs/answers.db")) == tmp_path / "runs" / "answers.db"
    assert sqlite_file(url) is None


def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    engine = make_engine(database_url(tmp_path / "store.db"))
    use_wal(engine, synchronous="FULL", busy_timeout_ms=1234)
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 1234
    engine.dispose()
