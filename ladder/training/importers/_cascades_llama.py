"""Importer for Zellinger & Thomson's cascade results: answers, confidences, costs and latencies per call."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ladder.core.errors import DataError
from ladder.training._builder import RoutingDataBuilder
from ladder.training._table import CONFIDENCE_KINDS
from ladder.training.dataset import RoutingData
from ladder.training.importers._common import field, iter_jsonl

_NUMBERS = ("answer_cost_usd", "self_check_cost_usd", "latency_ms", "input_tokens", "output_tokens")


def _confidence(value: Any, where: str) -> float:
    """A log-probability <= 0; the JSON transcription writes a certain "no" as -Infinity."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: 'confidence' should be a number, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or number > 0.0:
        raise DataError(f"{where}: 'confidence' must be a log-probability <= 0 (or -inf), got {value!r}")
    return number


def _cells(builder: RoutingDataBuilder, row: int, models: dict[str, Any], where: str) -> None:
    for model, call in models.items():
        here = f"{where}: model {model!r}"
        if not isinstance(call, dict):
            raise DataError(f"{here}: expected an object, got {type(call).__name__}")
        numbers = {key: float(field(call, key, (int, float), here)) for key in _NUMBERS}
        kind = field(call, "confidence_kind", str, here)
        if kind not in CONFIDENCE_KINDS:
            raise DataError(f"{here}: confidence_kind {kind!r} is not one of {', '.join(CONFIDENCE_KINDS)}")
        builder.cell(
            row,
            model,
            1.0 if field(call, "correct", bool, here) else 0.0,
            cost_usd=numbers["answer_cost_usd"],
            output_tokens=numbers["output_tokens"],
            answer=field(call, "answer", str, here),
            answer_logprob=_confidence(field(call, "confidence", (int, float), here), here),
            confidence_kind=kind,
            confidence_cost_usd=numbers["self_check_cost_usd"],
            latency_ms=numbers["latency_ms"],
            input_tokens=numbers["input_tokens"],
            where=here,
        )


def from_cascades_llama(directory: Path) -> RoutingData:
    """Every `<task>_<split>.jsonl` in the folder (name order), one question per line.

    question = the user prompt as sent (each task's system prompt is the same for all its questions);
    task and split = the authors'; per model: answer, correct, `cost_usd` = the answer call,
    `answer_logprob` = the confidence of the kind `confidence_kind` names, `confidence_cost_usd` = the
    self-check call (0 where the confidence came with the answer), latency_ms, input and output tokens.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a folder (the cascades-llama format expects *_train/_test.jsonl)")
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise DataError(f"{directory}: no *.jsonl files (the cascades-llama format expects e.g. mmlu_test.jsonl)")
    builder = RoutingDataBuilder()
    for path in files:
        for line, item in iter_jsonl(path):
            where = f"{path}:{line}"
            row = builder.question(
                str(field(item, "id", (str, int), where)),
                field(item, "prompt", str, where),
                task=field(item, "task", str, where),
                split=field(item, "split", str, where),
                where=where,
            )
            _cells(builder, row, field(item, "models", dict, where), where)
    return builder.build()
