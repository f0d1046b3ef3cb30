"""Collecting a routing table one labelled cell at a time, checked as it goes, into a RoutingData."""

from __future__ import annotations

import math

import numpy as np

from ladder.core.errors import DataError
from ladder.training._table import CONFIDENCE_KINDS, AnswerArray, FloatArray, RoutingData

_CALL_NUMBERS = ("confidence_cost_usd", "latency_ms", "input_tokens")


class RoutingDataBuilder:
    """Collects labelled cells one at a time, checking consistency, then builds a RoutingData.

    Every call names `where` a value came from ("file:line") so that errors can point at it.
    """

    def __init__(self) -> None:
        self._qindex: dict[str, int] = {}
        self._qids: list[str] = []
        self._texts: list[str] = []
        self._tasks: list[str | None] = []
        self._splits: list[str | None] = []
        self._qwhere: list[str] = []
        self._mindex: dict[str, int] = {}
        self._cells: dict[tuple[int, int], str] = {}
        self._rows: list[int] = []
        self._cols: list[int] = []
        self._labels: list[float] = []
        self._costs: list[float] = []
        self._tokens: list[float] = []
        self._answers: dict[int, str] = {}
        self._logprobs: dict[int, float] = {}
        self._kinds: dict[int, str] = {}
        self._calls: dict[str, dict[int, float]] = {name: {} for name in _CALL_NUMBERS}

    def __len__(self) -> int:
        return len(self._qids)

    def question(
        self, question_id: str, text: str, *, task: str | None = None, split: str | None = None, where: str
    ) -> int:
        """Register a question, or check it against its first registration; returns its row."""
        task, split = task or None, split or None
        row = self._qindex.get(question_id)
        if row is None:
            if not question_id:
                raise DataError(f"{where}: question_id is empty")
            if not text:
                raise DataError(f"{where}: question text is empty (question_id {question_id!r})")
            row = self._qindex[question_id] = len(self._qids)
            self._qids.append(question_id)
            self._texts.append(text)
            self._tasks.append(task)
            self._splits.append(split)
            self._qwhere.append(where)
            return row
        if self._texts[row] != text:
            raise DataError(
                f"{where}: question_id {question_id!r} has a different question text than at {self._qwhere[row]}"
            )
        for name, values, value in (("task", self._tasks, task), ("split", self._splits, split)):
            if value is None:
                continue
            if values[row] is None:
                values[row] = value
            elif values[row] != value:
                raise DataError(
                    f"{where}: question_id {question_id!r} has {name} {value!r} here but "
                    f"{values[row]!r} at {self._qwhere[row]}"
                )
        return row

    def cell(
        self,
        row: int,
        model: str,
        label: float,
        *,
        cost_usd: float = math.nan,
        output_tokens: float = math.nan,
        answer: str | None = None,
        answer_logprob: float = math.nan,
        confidence_kind: str | None = None,
        confidence_cost_usd: float = math.nan,
        latency_ms: float = math.nan,
        input_tokens: float = math.nan,
        where: str,
    ) -> None:
        """Record `model`'s label on question `row`; a second record of the same pair is an error.

        `answer` is the model's answer text and `answer_logprob` its confidence (<= 0; -inf is a certain
        "no"), of the kind `confidence_kind` names; `confidence_cost_usd`, `latency_ms` and `input_tokens`
        describe the calls (see `CANONICAL_COLUMNS`).
        """
        if not model:
            raise DataError(f"{where}: model is empty")
        if not 0.0 <= label <= 1.0:
            raise DataError(f"{where}: correct must be a number in [0, 1], got {label!r}")
        numbers = {
            "cost_usd": cost_usd,
            "output_tokens": output_tokens,
            "confidence_cost_usd": confidence_cost_usd,
            "latency_ms": latency_ms,
            "input_tokens": input_tokens,
        }
        for name, value in numbers.items():
            if not math.isnan(value) and not 0.0 <= value < math.inf:
                raise DataError(f"{where}: {name} must be a non-negative number, got {value!r}")
        if not math.isnan(answer_logprob) and not answer_logprob <= 0.0:
            raise DataError(f"{where}: answer_logprob must be a number <= 0 (or -inf), got {answer_logprob!r}")
        if confidence_kind and confidence_kind not in CONFIDENCE_KINDS:
            raise DataError(f"{where}: confidence_kind {confidence_kind!r} is not one of {', '.join(CONFIDENCE_KINDS)}")
        col = self._mindex.setdefault(model, len(self._mindex))
        key = (row, col)
        if key in self._cells:
            raise DataError(
                f"{where}: duplicate row for question_id {self._qids[row]!r} and model {model!r} "
                f"(first at {self._cells[key]})"
            )
        self._cells[key] = where
        self._rows.append(row)
        self._cols.append(col)
        self._labels.append(label)
        self._costs.append(cost_usd)
        self._tokens.append(output_tokens)
        if answer:
            self._answers[len(self._labels) - 1] = answer
        if not math.isnan(answer_logprob):
            self._logprobs[len(self._labels) - 1] = answer_logprob
        if confidence_kind:
            self._kinds[len(self._labels) - 1] = confidence_kind
        for name, values in self._calls.items():
            if not math.isnan(numbers[name]):
                values[len(self._labels) - 1] = numbers[name]

    def build(self) -> RoutingData:
        """The collected table; cells never recorded are NaN (unknown)."""
        shape = (len(self._qids), len(self._mindex))
        index = (np.asarray(self._rows, dtype=np.int64), np.asarray(self._cols, dtype=np.int64))
        arrays = []
        for values in (self._labels, self._costs, self._tokens):
            array = np.full(shape, np.nan, dtype=np.float32)
            array[index] = np.asarray(values, dtype=np.float32)
            arrays.append(array)
        answers, kinds = self._texts_at(self._answers, shape), self._texts_at(self._kinds, shape)
        logprobs = self._numbers_at(self._logprobs, shape)
        calls = {name: self._numbers_at(values, shape) for name, values in self._calls.items()}
        return RoutingData(
            question_ids=list(self._qids),
            questions=list(self._texts),
            models=list(self._mindex),
            labels=arrays[0],
            costs=arrays[1],
            output_tokens=arrays[2],
            tasks=list(self._tasks),
            splits=list(self._splits),
            answers=answers,
            answer_logprobs=logprobs,
            confidence_kinds=kinds,
            confidence_costs=calls["confidence_cost_usd"],
            latencies_ms=calls["latency_ms"],
            input_tokens=calls["input_tokens"],
        )

    def _texts_at(self, cells: dict[int, str], shape: tuple[int, int]) -> AnswerArray | None:
        if not cells:
            return None
        array = np.full(shape, None, dtype=object)
        for k, text in cells.items():
            array[self._rows[k], self._cols[k]] = text
        return array

    def _numbers_at(self, cells: dict[int, float], shape: tuple[int, int]) -> FloatArray | None:
        if not cells:
            return None
        array = np.full(shape, np.nan, dtype=np.float32)
        for k, value in cells.items():
            array[self._rows[k], self._cols[k]] = value
        return array
