"""Importers for single-CSV sources: NVIDIA's long `question,model,isCorrect` and RouterBench's wide table."""

from __future__ import annotations

import ast
import math
import warnings
from pathlib import Path

from ladder.core.errors import DataError, DataWarning
from ladder.training.dataset import RoutingData, RoutingDataBuilder
from ladder.training.importers._common import CsvRows, parse_label, parse_number, text_id


def from_nvidia_v3(path: Path) -> RoutingData:
    """NVIDIA's long CSV `question,model,isCorrect[,output_tokens]`, one row per question and model.

    `isCorrect` is `True`/`False` or a number in [0, 1]; an empty cell is an unknown label. The question
    id is `text_id(question)` (a sha256 prefix of the text), so the same text is one question.
    """
    path = Path(path)
    builder = RoutingDataBuilder()
    rows = CsvRows(path, ("question", "model", "isCorrect"))
    for line, row in rows:
        where = f"{path}:{line}"
        label = parse_label(row["isCorrect"], where, "isCorrect")
        if math.isnan(label):
            continue
        text = row["question"]
        index = builder.question(text_id(text), text, where=where)
        tokens = parse_number(row.get("output_tokens", ""), where, "output_tokens")
        builder.cell(index, row["model"].strip(), label, output_tokens=tokens, where=where)
    return _built(builder, path)


PROMPT_COLUMNS = ("prompt", "question", "query", "input")
"""Column names taken as the question text in a wide file, first match wins."""

RESERVED_COLUMNS = frozenset(
    {*PROMPT_COLUMNS, "sample_id", "eval_name", "oracle_model_to_route_to", "task", "split", "index", ""}
)


def _prompt_text(raw: str) -> str:
    """RouterBench stores some prompts as a Python list of turns (`"['...']"`): join those turns."""
    stripped = raw.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            turns = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return raw
        if isinstance(turns, list) and turns and all(isinstance(t, str) for t in turns):
            return "\n\n".join(turns)
    return raw


def from_routerbench_wide(path: Path) -> RoutingData:
    """RouterBench's wide CSV: one row per prompt, one label column per model, `<model>|total_cost` (USD).

    The question text comes from the first of `prompt`, `question`, `query`, `input`; a prompt stored as
    a Python list of turns is joined with blank lines. `sample_id` (when present) is the question id,
    else `text_id(prompt)`; `eval_name` is the task. A model column is any other column without `|` in
    its name (pandas index columns such as `Unnamed: 0` are ignored); `<model>|model_response` is kept as
    the model's answer; other `<model>|...` columns are ignored. Empty label cells are unknown.

    RouterBench reuses a few `sample_id`s for different prompts (`arc-challenge.val.174` in
    `arc_challenge_train.csv`): such a row gets a distinct id (`<id>#2`, `#3`, ...) and a DataWarning
    says how many were renamed.
    """
    path = Path(path)
    rows = CsvRows(path, ())
    prompt_column = next((c for c in PROMPT_COLUMNS if c in rows.columns), None)
    if prompt_column is None:
        rows.close()
        raise DataError(
            f"{path}: no prompt column (one of {', '.join(PROMPT_COLUMNS)}); "
            f"columns found: {', '.join(rows.columns)}"
        )
    models = [
        c for c in rows.columns if c not in RESERVED_COLUMNS and "|" not in c and not c.startswith("Unnamed:")
    ]
    if not models:
        rows.close()
        raise DataError(f"{path}: no model columns; columns found: {', '.join(rows.columns)}")
    builder = RoutingDataBuilder()
    ids = _DistinctIds()
    for line, row in rows:
        where = f"{path}:{line}"
        text = _prompt_text(row[prompt_column])
        question_id = ids.get(row.get("sample_id", "").strip() or text_id(text), text)
        index = builder.question(
            question_id, text, task=row.get("eval_name", "").strip() or None, where=where
        )
        for model in models:
            label = parse_label(row[model], where, model)
            if math.isnan(label):
                continue
            cost = parse_number(row.get(f"{model}|total_cost", ""), where, f"{model}|total_cost")
            answer = row.get(f"{model}|model_response", "").strip() or None
            builder.cell(index, model, label, cost_usd=cost, answer=answer, where=where)
    if ids.renamed:
        examples = ", ".join(sorted(ids.renamed)[:3])
        warnings.warn(
            f"{path}: {sum(ids.renamed.values())} row(s) reuse a sample_id for a different prompt "
            f"(e.g. {examples}); they were given distinct ids <sample_id>#2, #3, ...",
            DataWarning,
            stacklevel=2,
        )
    return _built(builder, path)


class _DistinctIds:
    """One id per distinct prompt: a source id met again with another text becomes `<id>#2`, `#3`, ..."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self.renamed: dict[str, int] = {}

    def get(self, question_id: str, text: str) -> str:
        candidate, n = question_id, 1
        while candidate in self._texts and self._texts[candidate] != text:
            n += 1
            candidate = f"{question_id}#{n}"
        if candidate not in self._texts:
            self._texts[candidate] = text
            if n > 1:
                self.renamed[question_id] = self.renamed.get(question_id, 0) + 1
        return candidate


def _built(builder: RoutingDataBuilder, path: Path) -> RoutingData:
    if len(builder) == 0:
        raise DataError(f"{path}: no labelled rows")
    return builder.build()
