"""The answer store: one row per (question, model), written once in a transaction; SQLite (WAL) or a URL.

SQLAlchemy Core keeps one code path for the embedded SQLite file and a team's Postgres. A row exists only
once its answer is complete, so resuming a run is "ask what has no row yet" and nothing half-written is ever
read back. The store remembers which pool it was made with and refuses another.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from ladder.core.errors import DataError
from ladder.core.pool import PoolConfig
from ladder.core.sqlstore import SafeText, database_url, make_engine, schema_transaction, sqlite_file, use_wal
from ladder.training.collect.questions import Question

SCHEMA_VERSION = "1"
metadata = sa.MetaData()
meta_table = sa.Table(
    "ladder_meta", metadata, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", SafeText)
)
questions_table = sa.Table(
    "ladder_questions",
    metadata,
    sa.Column("id", sa.String(512), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("text", SafeText, nullable=False),
    sa.Column("body", SafeText, nullable=False),
)
answers_table = sa.Table(
    "ladder_answers",
    metadata,
    sa.Column("question_id", sa.String(512), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # "ok" or "failed"
    sa.Column("failure", SafeText),
    sa.Column("text", SafeText),
    sa.Column("finish_reason", sa.String(64)),
    sa.Column("input_tokens", sa.Integer),
    sa.Column("output_tokens", sa.Integer),
    sa.Column("usage_estimated", sa.Boolean, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("latency_s", sa.Float, nullable=False),
    sa.Column("ttft_s", sa.Float),
    sa.Column("logprobs", SafeText),  # JSON list of {"token", "logprob"}, or NULL when none came back
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
labels_table = sa.Table(
    "ladder_labels",
    metadata,
    sa.Column("question_id", sa.String(512), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("judge", sa.String(256), primary_key=True),
    sa.Column("correct", sa.Float),  # NULL: the judge could not decide (an unknown label)
    sa.Column("detail", SafeText),
    sa.Column("created_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Answer:
    """One model's answer to one question, as stored. ``status`` is "ok" or "failed" (with ``failure``)."""

    question_id: str
    model: str
    status: str
    text: str | None
    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float
    latency_s: float
    ttft_s: float | None
    logprobs: list[dict[str, Any]] | None = None
    failure: str | None = None
    usage_estimated: bool = False
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def answer_logprob(self) -> float | None:
        """The mean of the answer's token logprobs, when the upstream returned them (CSV: answer_logprob)."""
        if not self.logprobs:
            return None
        return float(sum(float(t["logprob"]) for t in self.logprobs) / len(self.logprobs))


def _pool_identity(pool: PoolConfig) -> dict[str, str]:
    """What makes a pool the same pool: each model's name and the upstream model id behind it."""
    return {m.name: m.upstream.model for m in pool.models}


class AnswerStore:
    """The store behind ``ladder collect`` and ``ladder judge``."""

    def __init__(self, store: str | Path, *, create: bool) -> None:
        self.where = str(store)
        url = database_url(store)
        path = sqlite_file(url)
        if path is not None and not create and not path.is_file():
            raise DataError(f"{store}: no such store (make one with `ladder collect`)")
        if path is not None and create:
            folder = path.parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(f"{store}: cannot create its folder {folder} ({exc.strerror})") from None
        try:
            self.engine: Engine = make_engine(url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise DataError(f"{store}: cannot open the store: {exc}") from None
        use_wal(self.engine, synchronous="FULL", busy_timeout_ms=30000)
        try:
            with schema_transaction(self.engine, "ladder answer store") as conn:
                if create:
                    metadata.create_all(conn)
                self._check_schema(conn)
        except OperationalError as exc:
            if self.engine.dialect.name == "sqlite":
                raise DataError(f"{store}: not a Ladder answer store ({type(exc).__name__})") from None
            reason = " ".join(str(exc.orig).split())
            raise DataError(f"{store}: cannot reach the database ({reason}); is the server up?") from None
        except SQLAlchemyError as exc:
            raise DataError(f"{store}: not a Ladder answer store ({type(exc).__name__})") from None

    def close(self) -> None:
        self.engine.dispose()

    def _meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).scalar()
        return None if value is None else str(value)

    def _set_meta(self, conn: sa.Connection, key: str, value: str) -> None:
        conn.execute(sa.delete(meta_table).where(meta_table.c.key == key))
        conn.execute(sa.insert(meta_table).values(key=key, value=value))

    def _check_schema(self, conn: sa.Connection) -> None:
        version = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
        if version is None:
            self._set_meta(conn, "schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise DataError(f"{self.where}: store schema {version}, this Ladder reads {SCHEMA_VERSION}")

    # -- the pool ---------------------------------------------------------------------------------------
    def stored_pool(self) -> dict[str, str]:
        raw = self._meta("pool")
        return {} if raw is None else dict(json.loads(raw))

    def bind_pool(self, pool: PoolConfig, pool_path: str) -> None:
        """Record ``pool`` as the store's pool, or refuse when the store was made with a different one.

        A pool that keeps every stored model (same upstream model id) and adds new ones is the same pool
        grown: the new models are recorded. Prices and URLs may change; a model's identity may not.
        """
        stored, current = self.stored_pool(), _pool_identity(pool)
        problems = [
            f"{name} was {model!r}, now " + (f"{current[name]!r}" if name in current else "missing from the pool")
            for name, model in stored.items()
            if current.get(name) != model
        ]
        if problems:
            raise DataError(
                f"{self.where}: this store was made with a different pool than {pool_path} "
                f"({'; '.join(problems)}); use a new store for this pool"
            )
        if current != stored:
            with self.engine.begin() as conn:
                self._set_meta(conn, "pool", json.dumps({**stored, **current}, sort_keys=True))

    # -- questions --------------------------------------------------------------------------------------
    def add_questions(self, questions: Iterable[Question]) -> None:
        """Record the questions (once); an id whose question changed since is an error naming it."""
        questions = list(questions)
        with self.engine.begin() as conn:
            stored = {row.id: row.body for row in conn.execute(sa.select(questions_table.c.id, questions_table.c.body))}
            offset = len(stored)
            new: list[dict[str, Any]] = []
            for question in questions:
                body = question.to_json()
                if question.id in stored:
                    if stored[question.id] != body:
                        raise DataError(
                            f"{question.where}: question {question.id!r} differs from the one stored in "
                            f"{self.where} under that id; give it a new id or use a new store"
                        )
                    continue
                new.append({"id": question.id, "position": offset + len(new), "text": question.text, "body": body})
                stored[question.id] = body
            if new:
                conn.execute(sa.insert(questions_table), new)

    def questions(self) -> list[Question]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(questions_table.c.text, questions_table.c.body).order_by(questions_table.c.position)
            ).all()
        out = []
        for row in rows:
            body = json.loads(row.body)
            out.append(
                Question(
                    id=body["id"],
                    text=row.text,
                    messages=tuple(body["messages"]),
                    reference=body.get("reference"),
                    task=body.get("task"),
                    tests=body.get("tests"),
                    sensitive=bool(body.get("sensitive", False)),
                    where=self.where,
                )
            )
        return out

    # -- answers ----------------------------------------------------------------------------------------
    def answered(self) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(answers_table.c.question_id, answers_table.c.model)).all()
        return {(row.question_id, row.model) for row in rows}

    def put_answer(self, answer: Answer) -> bool:
        """Write an answer in its own transaction; False (and nothing written) when its row already exists."""
        row = {
            "question_id": answer.question_id,
            "model": answer.model,
            "status": answer.status,
            "failure": answer.failure,
            "text": answer.text,
            "finish_reason": answer.finish_reason,
            "input_tokens": answer.input_tokens,
            "output_tokens": answer.output_tokens,
            "usage_estimated": answer.usage_estimated,
            "cost_usd": answer.cost_usd,
            "latency_s": answer.latency_s,
            "ttft_s": answer.ttft_s,
            "logprobs": None if answer.logprobs is None else json.dumps(answer.logprobs),
            "attempts": answer.attempts,
            "created_at": time.time(),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(answers_table).values(**row))
        except IntegrityError:
            return False
        return True

    def answers(self) -> Iterator[Answer]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(answers_table)).mappings().all()
        for row in rows:
            yield Answer(
                question_id=row["question_id"],
                model=row["model"],
                status=row["status"],
                text=row["text"],
                finish_reason=row["finish_reason"],
                input_tokens=row["input_tokens"],
                output_tokens=row["output_tokens"],
                cost_usd=row["cost_usd"],
                latency_s=row["latency_s"],
                ttft_s=row["ttft_s"],
                logprobs=None if row["logprobs"] is None else json.loads(row["logprobs"]),
                failure=row["failure"],
                usage_estimated=bool(row["usage_estimated"]),
                attempts=row["attempts"],
            )

    def spent_usd(self) -> float:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(answers_table.c.cost_usd), 0.0))).scalar()
        return float(value or 0.0)

    # -- labels -----------------------------------------------------------------------------------------
    def put_labels(self, judge: str, labels: Mapping[tuple[str, str], tuple[float | None, str]]) -> None:
        """Replace every label ``judge`` made with ``labels`` ((question, model) -> (correct, detail))."""
        now = time.time()
        rows = [
            {"question_id": q, "model": m, "judge": judge, "correct": c, "detail": d, "created_at": now}
            for (q, m), (c, d) in labels.items()
        ]
        with self.engine.begin() as conn:
            conn.execute(sa.delete(labels_table).where(labels_table.c.judge == judge))
            if rows:
                conn.execute(sa.insert(labels_table), rows)

    def labels(self, judge: str) -> dict[tuple[str, str], tuple[float | None, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(labels_table).where(labels_table.c.judge == judge)).mappings().all()
        return {(r["question_id"], r["model"]): (r["correct"], r["detail"] or "") for r in rows}
