"""`ladder export-traffic`: the gateway's decisions and the outcomes reported on them as canonical rows."""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ladder.core.decision_record import DecisionRecord
from ladder.core.errors import DataError
from ladder.core.pool import PoolConfig
from ladder.core.traffic_db import DecisionRow, OutcomeRow, TrafficDB
from ladder.training._builder import RoutingDataBuilder
from ladder.training._table import RoutingData


def read_audit(paths: Sequence[Path]) -> Iterator[DecisionRow]:
    """Decisions from audit logs (JSON lines, read as a stream); a line that is not a ``DecisionRecord``
    (or one of a newer version) is an error naming file and line.

    The line of a request refused before any decision holds no decision: it is skipped. The last line of a
    file may be cut short by a crash mid-write (no newline after it); it is skipped too.
    """
    for path in paths:
        try:
            handle = path.open(encoding="utf-8")
        except FileNotFoundError as exc:
            raise DataError(f"{path}: no such audit log") from exc
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc}") from exc
        with handle:
            number = 0
            try:
                for number, line in enumerate(handle, start=1):
                    row = _audit_row(line, f"{path}:{number}")
                    if row is not None:
                        yield row
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number + 1}: not UTF-8 text ({exc.reason})") from exc


def _audit_row(line: str, where: str) -> DecisionRow | None:
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        if not line.endswith("\n"):  # the last line, cut short by a crash mid-write
            return None
        raise DataError(f"{where}: not a JSON audit record ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise DataError(f"{where}: not a Ladder decision record (not a JSON object)")
    time = str(record.pop("time", ""))  # the line's own fields, around the record
    prompt = record.pop("prompt", None)
    decision = DecisionRecord.parse(record, where)
    if not decision.decided:
        return None
    if not decision.request_id:
        raise DataError(f"{where}: a decision record without a request_id")
    return DecisionRow(decision.request_id, time, decision, None if prompt is None else str(prompt))


def parse_time(text: str, where: str = "time") -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise DataError(f"{where}: not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise DataError(f"{where}: a time needs its zone (e.g. 2026-01-31T00:00:00+00:00): {text!r}")
    return value


def load_decisions(
    audit: Sequence[Path], db: TrafficDB | None, since: datetime | None = None
) -> dict[str, DecisionRow]:
    """Decisions by request id, from the audit logs and the traffic database (a logged prompt wins)."""
    found: dict[str, DecisionRow] = {}
    sources: list[Iterator[DecisionRow]] = [read_audit(audit)]
    if db is not None:
        sources.append(db.iter_decisions())
    for source in sources:
        for row in source:
            if since is not None and (not row.time or parse_time(row.time) < since):
                continue
            known = found.get(row.request_id)
            if known is None or (known.prompt is None and row.prompt is not None):
                found[row.request_id] = row
    return found


def question_id(text: str) -> str:
    """Requests with the same text are one question: their labels are averaged."""
    return "t-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def split_of(qid: str, test_fraction: float) -> str:
    """A stable train/test assignment from the id alone (the same question lands in the same split daily)."""
    bucket = int(hashlib.sha256(qid.encode("utf-8")).hexdigest()[:8], 16) / 0x1_0000_0000
    return "test" if bucket < test_fraction else "train"


@dataclass
class ExportSummary:
    """What an export found and what it left out, and why."""

    decisions: int = 0
    outcomes: int = 0
    rows: int = 0
    questions: int = 0
    per_model: dict[str, int] = field(default_factory=dict)
    per_source: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def latest_outcomes(outcomes: Sequence[OutcomeRow]) -> dict[tuple[str, str, str], OutcomeRow]:
    """One outcome per (request, model, kind of source): a client that changes its rating counts once."""
    latest: dict[tuple[str, str, str], OutcomeRow] = {}
    for outcome in outcomes:
        latest[(outcome.request_id, outcome.model, outcome.source.split(":")[0])] = outcome
    return latest


def export_traffic(
    decisions: dict[str, DecisionRow],
    outcomes: Sequence[OutcomeRow],
    pool: PoolConfig | None = None,
    test_fraction: float | None = None,
    sources: frozenset[str] = frozenset({"feedback", "shadow"}),
) -> tuple[RoutingData, ExportSummary]:
    """Canonical rows: one per (question text, model) with the mean reported label.

    ``model`` is the checkpoint label of the pool model (its name without a pool). ``cost_usd`` and
    ``output_tokens`` are the means over the answers that model gave. Outcomes whose request has no stored
    prompt are counted and left out: text is only kept where the operator enabled storing prompts.
    ``sources`` picks the kinds of outcome used: client ``feedback``, ``shadow`` verdicts, or both (a
    model rated both ways on one request gets the mean).
    """
    if test_fraction is not None and not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction must lie strictly between 0 and 1, got {test_fraction}")
    labels = {m.name: m.checkpoint_label for m in pool.models} if pool is not None else {}
    summary = ExportSummary(decisions=len(decisions))
    cells: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    texts: dict[str, str] = {}
    for outcome in latest_outcomes(outcomes).values():
        if outcome.source.split(":")[0] not in sources:
            continue
        summary.outcomes += 1
        decision = decisions.get(outcome.request_id)
        if decision is None:
            summary.skip("no decision for the request id (outside the window or the logs given)")
            continue
        if not decision.prompt:
            summary.skip("no stored prompt (audit_prompts was off)")
            continue
        if pool is not None and outcome.model not in labels:
            summary.skip("model not in the pool")
            continue
        if not (math.isfinite(outcome.label) and 0 <= outcome.label <= 1):
            summary.skip("label outside [0, 1]")
            continue
        cost, tokens = math.nan, math.nan
        record = decision.record
        if outcome.model == record.rated_model:
            cost = _float(record.cost_usd)
            tokens = _float(record.usage.completion if record.usage is not None else None)
        qid = question_id(decision.prompt)
        texts[qid] = decision.prompt
        cells[(qid, labels.get(outcome.model, outcome.model))].append((outcome.label, cost, tokens))
        source = outcome.source.split(":")[0]
        summary.per_source[source] = summary.per_source.get(source, 0) + 1
    builder = RoutingDataBuilder()
    rows: dict[str, int] = {}
    for (qid, model), values in sorted(cells.items()):
        if qid not in rows:
            split = split_of(qid, test_fraction) if test_fraction is not None else None
            rows[qid] = builder.question(qid, texts[qid], split=split, where=f"request text {qid}")
        array = np.asarray(values, dtype=np.float64)
        builder.cell(
            rows[qid],
            model,
            float(array[:, 0].mean()),
            cost_usd=_nanmean(array[:, 1]),
            output_tokens=_nanmean(array[:, 2]),
            where=f"request text {qid}",
        )
        summary.per_model[model] = summary.per_model.get(model, 0) + 1
    summary.rows = sum(summary.per_model.values())
    summary.questions = len(rows)
    if summary.rows == 0:
        reasons = "; ".join(f"{n} {why}" for why, n in summary.skipped.items()) or "no outcomes reported"
        raise DataError(f"no labelled traffic to export ({summary.outcomes} outcomes: {reasons})")
    return builder.build(), summary


def _float(value: float | None) -> float:
    """A known, finite figure, else NaN (left out of the mean)."""
    return float(value) if value is not None and math.isfinite(value) else math.nan


def _nanmean(values: np.ndarray) -> float:
    known = values[~np.isnan(values)]
    return float(known.mean()) if known.size else math.nan


def window_start(text: str | None, now: datetime | None = None) -> datetime | None:
    """``--since``: a duration back from now (``36h``, ``7d``) or an ISO 8601 time with its zone."""
    if not text:
        return None
    from datetime import UTC, timedelta

    units = {"h": 3600, "d": 86400, "m": 60}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return (now or datetime.now(UTC)) - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    return parse_time(text, "--since")
