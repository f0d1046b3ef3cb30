"""The traffic database's contract on SQLite and on a real PostgreSQL server, and replicas racing to create it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from ladder.core.decision_record import DecisionRecord
from ladder.core.errors import ConfigError, DataError
from ladder.core.traffic_db import DecisionRow, OutcomeRow, TrafficDB
from ladder.training.collect import AnswerStore

pytest_plugins = ["postgres_support"]


def chose(request_id: str, model: str) -> DecisionRecord:
    return DecisionRecord(request_id=request_id, endpoint="route", chosen_model=model, p_correct={model: 0.5})


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "traffic.db")
    return str(request.getfixturevalue("postgres_url"))


def test_decisions_and_outcomes_round_trip(target: str) -> None:
    db = TrafficDB(target)
    try:
        assert db.engine.dialect.name == ("sqlite" if "://" not in target else "postgresql")
        first = DecisionRow("r-1", "2026-12-07T04:00:00.000+00:00", chose("r-1", "a"), "Hi\x00there")
        second = DecisionRow("r-2", "2026-12-07T04:00:01.000+00:00", chose("r-2", "b"), None)
        db.add_decisions([first, second])
        # a reused id keeps its latest decision, in one transaction
        db.add_decisions([DecisionRow("r-1", first.time, chose("r-1", "ü"), "again")])
        found = db.decision("r-1")
        assert found is not None and found.record == chose("r-1", "ü") and found.prompt == "again"
        assert found.record.chosen_model == "ü" and found.record.rated_model == "ü"
        assert [d.request_id for d in db.iter_decisions()] == ["r-1", "r-2"]
        assert [d.request_id for d in db.iter_decisions(since=second.time)] == ["r-2"]
        assert db.decision("missing") is None

        db.add_outcome(OutcomeRow("r-1", second.time, "c", 0.0, "feedback:thumbs", "NUL \x00 in a comment"))
        db.add_outcome(OutcomeRow("r-2", second.time, "b", 0.75, "shadow"))
        outcomes = list(db.iter_outcomes())
        assert [(o.request_id, o.label, o.source) for o in outcomes] == [
            ("r-1", 0.0, "feedback:thumbs"),
            ("r-2", 0.75, "shadow"),
        ]
        # PostgreSQL's text cannot hold U+0000: both databases store the same stand-in
        assert outcomes[0].comment == "NUL \ufffd in a comment"
        assert [o.request_id for o in db.iter_outcomes(["r-2"])] == ["r-2"]
    finally:
        db.close()
    # what one process wrote, another reads (as a second replica or `ladder retrain` would)
    reader = TrafficDB(target, create=False)
    try:
        assert [d.request_id for d in reader.iter_decisions()] == ["r-1", "r-2"]
    finally:
        reader.close()


def test_a_decision_of_a_newer_record_version_is_refused_by_name(tmp_path: Path) -> None:
    db = TrafficDB(tmp_path / "traffic.db")
    try:
        newer = '{"record_version":2,"request_id":"r-9","endpoint":"route","chosen_model":"a"}'
        with db.engine.begin() as conn:
            conn.execute(sa.insert(db.decisions), {"request_id": "r-9", "time": "t", "record": newer})
        with pytest.raises(DataError, match=r"decision 'r-9'.*record_version 2 was written by a newer Ladder"):
            db.decision("r-9")
    finally:
        db.close()


def test_a_bad_postgres_url_is_a_clear_error(postgres_server: str) -> None:
    with pytest.raises(ConfigError, match=r"traffic database 'postgresql\+psycopg://.*/no_such_db'"):
        TrafficDB(f"{postgres_server}/no_such_db")


@pytest.mark.parametrize("opener", ["traffic", "answers"])
def test_replicas_starting_together_create_the_tables_once(postgres_url: str, opener: str) -> None:
    """Eight processes' worth of first opens at the same moment: every one succeeds, one schema results."""
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def open_store() -> None:
        try:
            start.wait()
            store = TrafficDB(postgres_url) if opener == "traffic" else AnswerStore(postgres_url, create=True)
            store.close()
        except BaseException as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if opener == "answers":
                versions = conn.execute(sa.text("SELECT count(*) FROM ladder_meta WHERE key = 'schema_version'"))
                assert versions.scalar() == 1
    finally:
        engine.dispose()
    expected = {"decisions", "outcomes"} if opener == "traffic" else {"ladder_meta", "ladder_answers"}
    assert expected <= tables


def test_an_unreachable_answer_store_says_so() -> None:
    with pytest.raises(DataError, match=r"cannot reach the database .*is the server up"):
        AnswerStore("postgresql+psycopg://ladder@127.0.0.1:1/x", create=True)  # nothing listens on port 1
