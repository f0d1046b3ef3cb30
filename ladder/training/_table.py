"""The in-memory routing table (questions × models, NaN where unknown), its builder and its CSV text."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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
)
"""Columns of the canonical long CSV, in the order `write_canonical` writes them.

`answer` (the model's answer text) and `answer_logprob` (its mean token log-probability) are written only
when the table holds any, so a table without answers writes (and digests) exactly as before they existed.
"""
ANSWER_COLUMNS = ("answer", "answer_logprob")
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
    and `answer_logprobs` (NaN where unknown), when not None, have the same shape too.
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
        if self.answers is not None:
            self.answers = np.asarray(self.answers, dtype=object)
            if self.answers.shape != shape:
                raise DataError(f"answers has shape {self.answers.shape}, expected {shape}")
        if self.answer_logprobs is not None:
            self.answer_logprobs = _matrix(self.answer_logprobs, shape, "answer_logprobs")
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
    ) -> RoutingData:
        """Build from a label matrix; costs, output tokens, tasks, splits and answers default to unknown."""
        shape = (len(question_ids), len(models))
        return cls(
            question_ids=list(question_ids),
            questions=list(questions),
            models=list(models),
            labels=np.asarray(labels, dtype=np.float32),
            costs=np.full(shape, np.nan, np.float32) if costs is None else np.asarray(costs, np.float32),
            output_tokens=(
                np.full(shape, np.nan, np.float32)
                if output_tokens is None
                else np.asarray(output_tokens, np.float32)
            ),
            tasks=list(tasks) if tasks is not None else [None] * shape[0],
            splits=list(splits) if splits is not None else [None] * shape[0],
            answers=None if answers is None else np.asarray(answers, dtype=object),
            answer_logprobs=None if answer_logprobs is None else np.asarray(answer_logprobs, np.float32),
        )

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
            answers=None if self.answers is None else self.answers[index],
            answer_logprobs=None if self.answer_logprobs is None else self.answer_logprobs[index],
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
            answers=None if self.answers is None else self.answers[:, cols],
            answer_logprobs=None if self.answer_logprobs is None else self.answer_logprobs[:, cols],
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
        with_answers = self.has_answers
        columns = CANONICAL_COLUMNS if with_answers else CANONICAL_COLUMNS[: -len(ANSWER_COLUMNS)]
        yield ",".join(columns) + "\n"
        heads = [f"{_field(q)},{_field(t)}," for q, t in zip(self.question_ids, self.questions, strict=True)]
        tails = [
            f",{_field(t or '')},{_field(s or '')}\n" for t, s in zip(self.tasks, self.splits, strict=True)
        ]
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
                f"{where}: question_id {question_id!r} has a different question text than at "
                f"{self._qwhere[row]}"
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
        where: str,
    ) -> None:
        """Record `model`'s label on question `row`; a second record of the same pair is an error.

        `answer` is the model's answer text and `answer_logprob` its mean token log-probability (<= 0).
        """
        if not model:
            raise DataError(f"{where}: model is empty")
        if not 0.0 <= label <= 1.0:
            raise DataError(f"{where}: correct must be a number in [0, 1], got {label!r}")
        for name, value in (("cost_usd", cost_usd), ("output_tokens", output_tokens)):
            if not math.isnan(value) and not 0.0 <= value < math.inf:
                raise DataError(f"{where}: {name} must be a non-negative number, got {value!r}")
        if not math.isnan(answer_logprob) and not -math.inf < answer_logprob <= 0.0:
            raise DataError(f"{where}: answer_logprob must be a finite number <= 0, got {answer_logprob!r}")
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

    def build(self) -> RoutingData:
        """The collected table; cells never recorded are NaN (unknown)."""
        shape = (len(self._qids), len(self._mindex))
        index = (np.asarray(self._rows, dtype=np.int64), np.asarray(self._cols, dtype=np.int64))
        arrays = []
        for values in (self._labels, self._costs, self._tokens):
            array = np.full(shape, np.nan, dtype=np.float32)
            array[index] = np.asarray(values, dtype=np.float32)
            arrays.append(array)
        answers = logprobs = None
        if self._answers:
            answers = np.full(shape, None, dtype=object)
            for k, text in self._answers.items():
                answers[self._rows[k], self._cols[k]] = text
        if self._logprobs:
            logprobs = np.full(shape, np.nan, dtype=np.float32)
            for k, value in self._logprobs.items():
                logprobs[self._rows[k], self._cols[k]] = value
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
        )
