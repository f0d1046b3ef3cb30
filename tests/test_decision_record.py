"""The decision record's schema: old audit lines read, newer versions and renamed fields are refused by name,
and the drift report and the retraining export read the typed record."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ladder.core.decision_record import DecisionRecord
from ladder.core.errors import DataError
from ladder.core.policy import PolicyName
from ladder.core.traffic_db import OutcomeRow
from ladder.training.drift_report import timeline, typical_routing, window_sample
from ladder.training.traffic import export_traffic, load_decisions, read_audit

# a line as the first audit log wrote it: no record_version, correlation_id, client, session or cascade
OLD_LINE: dict[str, Any] = {
    "time": "2026-01-05T10:00:00.000+00:00",
    "request_id": "r-old",
    "endpoint": "chat",
    "chosen_model": "small",
    "answered_model": "large",
    "policy": "cheapest",
    "tolerance": 0.1,
    "threshold": 0.72,
    "p_correct": {"small": 0.8, "large": 0.9},
    "expected_cost_usd": {"small": 0.001, "large": 0.01},
    "excluded": {},
    "sensitive": False,
    "usage": {"prompt": 12, "completion": 30},
    "cost_usd": 0.004,
    "baseline_model": "large",
    "baseline_cost_usd": 0.01,
    "savings_usd": 0.006,
    "fallback": [{"model": "small", "outcome": "timeout", "ms": 1500.0}],
    "routing_ms": 3.2,
    "latency_ms": 1800.5,
    "error": None,
    "prompt": "What is 2 + 2?",
}


def write_lines(path: Path, *lines: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_an_old_line_without_a_version_reads_as_version_1(tmp_path: Path) -> None:
    (row,) = read_audit([write_lines(tmp_path / "audit.jsonl", OLD_LINE)])
    record = row.record
    assert isinstance(record, DecisionRecord) and record.record_version == 1
    assert (row.request_id, row.time, row.prompt) == ("r-old", OLD_LINE["time"], "What is 2 + 2?")
    assert record.chosen_model == "small" and record.rated_model == "large"
    assert record.policy is PolicyName.CHEAPEST
    assert record.usage is not None and record.usage.completion == 30
    assert record.fallback is not None and record.fallback[0].outcome == "timeout"
    assert record.client is None and record.cascade is None
    # written again, it keeps every key it had (time and prompt are the line's, not the record's)
    again = record.to_line()
    assert again.pop("record_version") == 1
    assert again == {k: v for k, v in OLD_LINE.items() if k not in ("time", "prompt")}


def test_a_newer_version_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "audit.jsonl", OLD_LINE, {**OLD_LINE, "request_id": "r-2", "record_version": 2})
    with pytest.raises(DataError, match=rf"{path}:2: .*record_version 2 was written by a newer Ladder.*upgrade"):
        list(read_audit([path]))
    with pytest.raises(ValueError, match="unknown record_version 'one'"):
        DecisionRecord.model_validate({**OLD_LINE, "record_version": "one"})


def test_a_renamed_field_is_refused_by_the_report_and_the_export(tmp_path: Path) -> None:
    """A line whose router's choice is under another key is no decision record: neither ``ladder report``
    nor ``ladder export-traffic`` (both read through ``load_decisions``) misreads it as a choice of None."""
    renamed = {k: v for k, v in OLD_LINE.items() if k != "chosen_model"} | {"routed_model": "small"}
    path = write_lines(tmp_path / "audit.jsonl", OLD_LINE, renamed)
    with pytest.raises(DataError, match=rf"{path}:2: .*chosen_model: Field required.*routed_model: Extra"):
        load_decisions([path], None)


def test_the_line_of_a_refused_request_is_no_decision_to_read(tmp_path: Path) -> None:
    refused = {"time": OLD_LINE["time"], "request_id": "r-refused", "endpoint": "route", "chosen_model": None,
               "answered_model": None, "status": 429, "error": "overloaded"}  # fmt: skip
    assert DecisionRecord.model_validate({k: v for k, v in refused.items() if k != "time"}).decided is False
    rows = load_decisions([write_lines(tmp_path / "audit.jsonl", refused, OLD_LINE)], None)
    assert list(rows) == ["r-old"]


def test_the_drift_report_reads_the_typed_record(tmp_path: Path) -> None:
    second = {**OLD_LINE, "request_id": "r-new", "chosen_model": "large", "tolerance": 0.3, "cost_usd": 0.002,
              "p_correct": {"small": 0.4, "large": 0.7}, "error": "UpstreamError"}  # fmt: skip
    rows = list(load_decisions([write_lines(tmp_path / "audit.jsonl", OLD_LINE, second)], None).values())
    sample = window_sample(rows, "the window")
    assert sample.names == ["large", "small"]
    assert sample.p.tolist() == [[0.9, 0.8], [0.7, 0.4]] and sample.chosen.tolist() == [1, 0]
    tolerance, costs = typical_routing(rows, sample.names)
    assert tolerance == pytest.approx(0.2) and costs.tolist() == [0.01, 0.001]
    (day,) = timeline(rows, "day")
    assert day["shares"] == {"large": 0.5, "small": 0.5} and day["errors"] == 1
    assert day["cost_usd"] == pytest.approx(0.006) and day["baseline_cost_usd"] == pytest.approx(0.02)


def test_the_retraining_export_reads_the_typed_record(tmp_path: Path) -> None:
    rows = load_decisions([write_lines(tmp_path / "audit.jsonl", OLD_LINE)], None)
    outcomes = [
        OutcomeRow("r-old", OLD_LINE["time"], "large", 1.0, "feedback:thumbs"),  # the model that answered
        OutcomeRow("r-old", OLD_LINE["time"], "small", 0.0, "shadow"),  # another model, judged in shadow
    ]
    data, summary = export_traffic(rows, outcomes)
    assert summary.rows == 2 and summary.per_source == {"feedback": 1, "shadow": 1}
    by_model = dict(zip(data.models, range(len(data.models)), strict=True))
    large, small = by_model["large"], by_model["small"]
    assert data.costs[0, large] == pytest.approx(0.004) and data.output_tokens[0, large] == 30
    assert math.isnan(data.costs[0, small]) and math.isnan(data.output_tokens[0, small])
