"""The traffic database: routed decisions and the outcomes reported on them, joined by request id."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.core.decision_record import DecisionRecord
from ladder.core.errors import ConfigError, DataError

try:  # an optional dependency: the gateway's and the training pipeline's extras install it
    import sqlalchemy as sa

    from ladder.core.sqlstore import SafeText, create_tables, database_url, make_engine, sqlite_file, use_wal
except ImportError:  # pragma: no cover - reported when a database is opened
    sa = None  # type: ignore[assignment]

THUMBS = {"up": 1.0, "down": 0.0}


@dataclass(frozen=True)
class DecisionRow:
    """One decision as stored: its record and, when storing prompts is enabled, the text."""

    request_id: str
    time: str
    record: DecisionRecord
    prompt: str | None


@dataclass(frozen=True)
class OutcomeRow:
    """An outcome for one model's answer to one request: client feedback or a shadow verdict."""

    request_id: str
    time: str
    model: str
    label: float
    source: str
    comment: str | None = None


class TrafficDB:
    """Tables ``decisions`` and ``outcomes`` in SQLite or PostgreSQL (replicas share one); blocking calls."""

    def __init__(self, target: str | Path, create: bool = True) -> None:
        if sa is None:
            raise ConfigError("the traffic database needs SQLAlchemy: pip install 'ladder-router[serve]'")
        url = database_url(target)
        path = sqlite_file(url)
        if path is not None and not create and not path.is_file():
            raise DataError(f"{path}: no such traffic database")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = make_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ConfigError(f"traffic database {url!r}: {exc}") from exc
        use_wal(self.engine, synchronous="NORMAL", busy_timeout_ms=5000)
        metadata = sa.MetaData()
        self.decisions = sa.Table(
            "decisions",
            metadata,
            sa.Column("request_id", sa.String(128), primary_key=True),
            sa.Column("time", sa.String(40), nullable=False, index=True),
            sa.Column("record", SafeText, nullable=False),
            sa.Column("prompt", SafeText, nullable=True),
        )
        self.outcomes = sa.Table(
            "outcomes",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("request_id", sa.String(128), nullable=False, index=True),
            sa.Column("time", sa.String(40), nullable=False),
            sa.Column("model", sa.String(256), nullable=False),
            sa.Column("label", sa.Float, nullable=False),
            sa.Column("source", sa.String(64), nullable=False),
            sa.Column("comment", SafeText, nullable=True),
        )
        try:
            if create:
                create_tables(self.engine, metadata, "ladder traffic tables")
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"traffic database {url!r}: {exc}") from exc

    def add_decisions(self, rows: Sequence[DecisionRow]) -> None:
        """Insert decisions in one transaction; a reused request id keeps its latest decision."""
        if not rows:
            return
        ids = [r.request_id for r in rows]
        values = [
            {
                "request_id": r.request_id,
                "time": r.time,
                "record": json.dumps(r.record.to_line(), ensure_ascii=False, separators=(",", ":")),
                "prompt": r.prompt,
            }
            for r in {r.request_id: r for r in rows}.values()
        ]
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.decisions).where(self.decisions.c.request_id.in_(ids)))
            conn.execute(sa.insert(self.decisions), values)

    def decision(self, request_id: str) -> DecisionRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.decisions).where(self.decisions.c.request_id == request_id)).first()
        return None if row is None else _decision(row)

    def add_outcome(self, outcome: OutcomeRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(self.outcomes),
                {
                    "request_id": outcome.request_id,
                    "time": outcome.time,
                    "model": outcome.model,
                    "label": outcome.label,
                    "source": outcome.source,
                    "comment": outcome.comment,
                },
            )

    def iter_decisions(self, since: str | None = None) -> Iterator[DecisionRow]:
        query = sa.select(self.decisions).order_by(self.decisions.c.time)
        if since is not None:
            query = query.where(self.decisions.c.time >= since)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                yield _decision(row)

    def has_outcome(self, request_id: str, source_prefix: str) -> bool:
        """Whether ``request_id`` has an outcome whose source starts with ``source_prefix`` (indexed)."""
        query = sa.select(self.outcomes.c.id).where(
            self.outcomes.c.request_id == request_id, self.outcomes.c.source.startswith(source_prefix)
        )
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def iter_outcomes(self, request_ids: Iterable[str] | None = None) -> Iterator[OutcomeRow]:
        query = sa.select(self.outcomes).order_by(self.outcomes.c.id)
        wanted = None if request_ids is None else set(request_ids)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                if wanted is None or row.request_id in wanted:
                    yield OutcomeRow(row.request_id, row.time, row.model, row.label, row.source, row.comment)

    def close(self) -> None:
        self.engine.dispose()


def _decision(row: Any) -> DecisionRow:
    where = f"traffic database, decision {row.request_id!r}"
    try:
        data = json.loads(row.record)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not a JSON decision record ({exc.msg})") from exc
    return DecisionRow(row.request_id, row.time, DecisionRecord.parse(data, where), row.prompt)
