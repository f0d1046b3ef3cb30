"""The in-memory routing table (questions × models, NaN where unknown), its builder and its CSV text."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ladder.core.errors import DataError
from ladder.training._summary import DataSummary, summarize

FloatArray = npt.NDArray[np.float32]
RowSelection = npt.NDArray[np.bool_] | npt.NDArray[np.integer] | Sequence[int] | Sequence[bool]

CANONICAL_COLUMNS = (
    "question_id",
    "question",
    "model",
    "correct",
    "cost_usd",
    "output_tokens",
    "task",
    "split",
    "answer",
    "answer_logprob",
    "confidence_kind",
    "confidence_cost_usd",
    "latency_ms",
    "input_tokens",
)
"""Columns of the canonical long CSV, in the order `write_canonical` writes them.

`answer` (the model's answer text) and `answer_logprob` (its confidence: by default its mean token
log-probability; `-inf` allowed) are written only when the table holds any, so a table without answers
writes (and digests) exactly as before they existed. The call columns after them are written only when
the table holds any: `confidence_kind` says what `answer_logprob` measures (`answer_logprob`, or
`self_check_logprob`: log P("yes") when the model is asked whether its answer is right),
`confidence_cost_usd` what the call that produced it cost beyond the answer (0 when it came with the
answer), `latency_ms` and `input_tokens` the answer call's.
"""
ANSWER_COLUMNS = ("answer", "answer_logprob")
CALL_COLUMNS = ("confidence_kind", "confidence_cost_usd", "latency_ms", "input_tokens")
CONFIDENCE_KINDS = ("answer_logprob", "self_check_logprob")
"""What `answer_logprob` may measure (`confidence_kind`; empty means the answer's own log-probability)."""
_CELL_ARRAYS = ("answers", "answer_logprobs", "confidence_kinds", "confidence_costs", "latencies_ms", "input_tokens")
AnswerArray = npt.NDArray[np.object_]


def _matrix(values: npt.ArrayLike, shape: tuple[int, int], name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float32)
    if array.shape != shape:
        raise DataError(f"{name} has shape {array.shape}, expected {shape} (questions × models)")
    return array


def _first_duplicate(values: Sequence[str]) -> str | None:
    return next((v for v, c in Counter(values).items() if c > 1), None)


@dataclass(eq=False)
class RoutingData:
    """Per-question, per-model labels: `labels[i, j]` is model j's correctness on question i, NaN if unknown.

    `costs` (USD per request) and `output_tokens` have the same shape and are NaN where unknown;
    `tasks` and `splits` hold one optional value per question. `answers` (an object array of str or None)
    and `answer_logprobs` (NaN where unknown, -inf allowed), when not None, have the same shape too, as do
    the call records: `confidence_kinds` (object), `confidence_costs`, `latencies_ms`, `input_tokens`.
    """

    question_ids: list[str]
    questions: list[str]
    models: list[str]
    labels: FloatArray
    costs: FloatArray
    output_tokens: FloatArray
    tasks: list[str | None]
    splits: list[str | None]
    answers: AnswerArray | None = None
    answer_logprobs: FloatArray | None = None
    confidence_kinds: AnswerArray | None = None
    confidence_costs: FloatArray | None = None
    latencies_ms: FloatArray | None = None
    input_tokens: FloatArray | None = None

    def __post_init__(self) -> None:
        n = len(self.question_ids)
        for name in ("questions", "tasks", "splits"):
            if len(getattr(self, name)) != n:
                raise DataError(f"{name} has {len(getattr(self, name))} entries, expected {n}")
        if (dup := _first_duplicate(self.question_ids)) is not None:
            raise DataError(f"question_id {dup!r} appears more than once")
        if (dup := _first_duplicate(self.models)) is not None:
            raise DataError(f"model {dup!r} appears more than once")
        shape = (n, len(self.models))
        self.labels = _matrix(self.labels, shape, "labels")
        self.costs = _matrix(self.costs, shape, "costs")
        self.output_tokens = _matrix(self.output_tokens, shape, "output_tokens")
        for name in ("answers", "confidence_kinds"):
            if (texts := getattr(self, name)) is not None:
                texts = np.asarray(texts, dtype=object)
                if texts.shape != shape:
                    raise DataError(f"{name} has shape {texts.shape}, expected {shape}")
                setattr(self, name, texts)
        for name in ("answer_logprobs", "confidence_costs", "latencies_ms", "input_tokens"):
            if getattr(self, name) is not None:
                setattr(self, name, _matrix(getattr(self, name), shape, name))
        known = self.labels[~np.isnan(self.labels)]
        if known.size and (known.min() < 0.0 or known.max() > 1.0):
            raise DataError("labels must lie in [0, 1] (or be NaN for unknown)")

    @classmethod
    def from_labels(
        cls,
        question_ids: Sequence[str],
        questions: Sequence[str],
        models: Sequence[str],
        labels: npt.ArrayLike,
        *,
        costs: npt.ArrayLike | None = None,
        output_tokens: npt.ArrayLike | None = None,
        tasks: Sequence[str | None] | None = None,
        splits: Sequence[str | None] | None = None,
        answers: npt.ArrayLike | None = None,
        answer_logprobs: npt.ArrayLike | None = None,
        confidence_kinds: npt.ArrayLike | None = None,
        confidence_costs: npt.ArrayLike | None = None,
        latencies_ms: npt.ArrayLike | None = None,
        input_tokens: npt.ArrayLike | None = None,
    ) -> RoutingData:
        """Build from a label matrix; costs, output tokens, tasks, splits, answers and call records default to
        unknown."""
        shape = (len(question_ids), len(models))
        return cls(
            question_ids=list(question_ids),
            questions=list(questions),
            models=list(models),
            labels=np.asarray(labels, dtype=np.float32),
            costs=np.full(shape, np.nan, np.float32) if costs is None else np.asarray(costs, np.float32),
            output_tokens=(
                np.full(shape, np.nan, np.float32) if output_tokens is None else np.asarray(output_tokens, np.float32)
            ),
            tasks=list(tasks) if tasks is not None else [None] * shape[0],
            splits=list(splits) if splits is not None else [None] * shape[0],
            answers=None if answers is None else np.asarray(answers, dtype=object),
            answer_logprobs=None if answer_logprobs is None else np.asarray(answer_logprobs, np.float32),
            confidence_kinds=None if confidence_kinds is None else np.asarray(confidence_kinds, dtype=object),
            confidence_costs=None if confidence_costs is None else np.asarray(confidence_costs, np.float32),
            latencies_ms=None if latencies_ms is None else np.asarray(latencies_ms, np.float32),
            input_tokens=None if input_tokens is None else np.asarray(input_tokens, np.float32),
        )

    def map_cells(self, pick: Callable[[npt.NDArray[Any]], npt.NDArray[Any]]) -> dict[str, Any]:
        """The optional per-cell arrays with `pick` applied (None stays None), as RoutingData arguments."""
        arrays = {name: getattr(self, name) for name in _CELL_ARRAYS}
        return {name: None if a is None else pick(a) for name, a in arrays.items()}

    @property
    def has_calls(self) -> bool:
        """Whether any cell carries a call record (confidence kind or cost, latency, input tokens)."""
        return any(getattr(self, name) is not None for name in _CELL_ARRAYS[2:])

    @property
    def has_answers(self) -> bool:
        """Whether any cell carries an answer text or an answer log-probability."""
        return self.answers is not None or self.answer_logprobs is not None

    def __len__(self) -> int:
        return len(self.question_ids)

    @property
    def known(self) -> npt.NDArray[np.bool_]:
        """Mask of the (question, model) cells whose label is known."""
        return ~np.isnan(self.labels)

    def subset(self, rows: RowSelection) -> RoutingData:
        """The questions picked by a boolean mask (one entry per question) or by indices, in that order."""
        selection = np.asarray(rows)
        if selection.dtype == np.bool_:
            if selection.shape != (len(self),):
                raise DataError(f"mask has shape {selection.shape}, expected ({len(self)},)")
            index = np.flatnonzero(selection)
        elif selection.size == 0:
            index = np.zeros(0, dtype=np.int64)
        elif np.issubdtype(selection.dtype, np.integer) and selection.ndim == 1:
            index = selection.astype(np.int64)
            if index.min() < 0 or index.max() >= len(self):
                raise DataError(f"row index out of range for {len(self)} questions")
        else:
            raise DataError(f"cannot select rows with an array of dtype {selection.dtype}")
        picked = index.tolist()
        return RoutingData(
            question_ids=[self.question_ids[i] for i in picked],
            questions=[self.questions[i] for i in picked],
            models=list(self.models),
            labels=self.labels[index],
            costs=self.costs[index],
            output_tokens=self.output_tokens[index],
            tasks=[self.tasks[i] for i in picked],
            splits=[self.splits[i] for i in picked],
            **self.map_cells(lambda a: a[index]),
        )

    def select_models(self, models: Sequence[str]) -> RoutingData:
        """The same questions restricted to (and ordered as) `models`."""
        missing = [m for m in models if m not in self.models]
        if missing:
            raise DataError(f"unknown model(s) {missing}; the data has {self.models}")
        cols = [self.models.index(m) for m in models]
        return RoutingData(
            question_ids=list(self.question_ids),
            questions=list(self.questions),
            models=list(models),
            labels=self.labels[:, cols],
            costs=self.costs[:, cols],
            output_tokens=self.output_tokens[:, cols],
            tasks=list(self.tasks),
            splits=list(self.splits),
            **self.map_cells(lambda a: a[:, cols]),
        )

    def split(self, name: str) -> RoutingData:
        """The questions whose `split` value is `name`; DataError when no question has it."""
        mask = np.array([s == name for s in self.splits], dtype=np.bool_)
        if not mask.any():
            found = sorted({s for s in self.splits if s is not None})
            raise DataError(f"no question has split {name!r}; splits found: {found or 'none'}")
        return self.subset(mask)

    def iter_text(self, chunk_rows: int = 4096) -> Iterator[str]:
        """The canonical CSV text, in chunks: a header, then one row per known label, question-major.

        Only labelled cells are written (a missing row means unknown), so a question or model without
        any known label does not survive a write/read round trip. Text fields are quoted as the csv
        module's QUOTE_MINIMAL does; each question's fields are escaped once, not once per model. The
        answer columns are written only when the table has answers.
        """
        with_calls = self.has_calls
        with_answers = self.has_answers or with_calls
        width = len(CANONICAL_COLUMNS) - (0 if with_calls else len(CALL_COLUMNS))
        width -= 0 if with_answers else len(ANSWER_COLUMNS)
        columns = CANONICAL_COLUMNS[:width]
        yield ",".join(columns) + "\n"
        heads = [f"{_field(q)},{_field(t)}," for q, t in zip(self.question_ids, self.questions, strict=True)]
        tails = [f",{_field(t or '')},{_field(s or '')}\n" for t, s in zip(self.tasks, self.splits, strict=True)]
        models = [_field(m) for m in self.models]
        rows, cols = np.nonzero(self.known)
        labels = [_number(v) for v in self.labels[rows, cols]]
        costs = [_number(v) for v in self.costs[rows, cols]]
        tokens = [_number(v) for v in self.output_tokens[rows, cols]]
        extras = [""] * len(labels)
        if with_answers:
            texts = [None] * len(labels) if self.answers is None else self.answers[rows, cols].tolist()
            logprobs = (
                [""] * len(labels)
                if self.answer_logprobs is None
                else [_number(v) for v in self.answer_logprobs[rows, cols]]
            )
            extras = [f",{_field(a or '')},{lp}" for a, lp in zip(texts, logprobs, strict=True)]
        if with_calls:
            kinds = [None] * len(labels) if self.confidence_kinds is None else self.confidence_kinds[rows, cols]
            numbers = [
                [""] * len(labels) if a is None else [_number(v) for v in a[rows, cols]]
                for a in (self.confidence_costs, self.latencies_ms, self.input_tokens)
            ]
            extras = [
                f"{e},{_field(k or '')},{c},{ms},{t}" for e, k, c, ms, t in zip(extras, kinds, *numbers, strict=True)
            ]
        lines: list[str] = []
        for k, (i, j) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            tail = tails[i] if not with_answers else tails[i][:-1] + extras[k] + "\n"
            lines.append(f"{heads[i]}{models[j]},{labels[k]},{costs[k]},{tokens[k]}{tail}")
            if len(lines) == chunk_rows:
                yield "".join(lines)
                lines.clear()
        if lines:
            yield "".join(lines)

    def digest(self) -> str:
        """sha256 (hex) of the canonical CSV text: the sha256 of the file `write_canonical` writes (.csv)."""
        h = hashlib.sha256()
        for chunk in self.iter_text():
            h.update(chunk.encode("utf-8"))
        return h.hexdigest()

    def summary(self) -> DataSummary:
        """Counts, per-model accuracy and coverage, and oracle accuracy over questions with any label."""
        return summarize(self.labels, self.costs, self.output_tokens, self.models, self.tasks, self.splits)


def _field(text: str) -> str:
    """One CSV field: quoted (with doubled quotes) when it holds a comma, a quote or a line break."""
    if any(c in text for c in _SPECIAL):
        return '"' + text.replace('"', '""') + '"'
    return text


_SPECIAL = (",", '"', "\n", "\r")


def _number(value: np.float32) -> str:
    """Empty for NaN, else the shortest text that reads back to the same float32."""
    if math.isnan(value):
        return ""
    if value == 0.0:
        return "0"
    if value == 1.0:
        return "1"
    return str(value)
