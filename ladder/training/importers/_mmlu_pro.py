"""Importer for MMLU-Pro's per-model evaluation results (TIGER-AI-Lab/MMLU-Pro `eval_results/`)."""

from __future__ import annotations

import math
import string
from pathlib import Path

from ladder.core.errors import DataError
from ladder.training.dataset import RoutingData, RoutingDataBuilder
from ladder.training.importers._common import (
    CsvRows,
    field,
    iter_jsonl,
    parse_label,
    parse_number,
    require_dir,
)

CHARS_PER_TOKEN = 4.0
"""Output tokens are estimated as output_chars / CHARS_PER_TOKEN."""


def question_text(question: str, options: list[str]) -> str:
    """What a user would send: the question, then its lettered options ("A. ...", one per line)."""
    if len(options) > len(string.ascii_uppercase):
        raise DataError(f"{len(options)} options is more than can be lettered")
    lettered = (
        f"{letter}. {option}" for letter, option in zip(string.ascii_uppercase, options, strict=False)
    )
    return "\n".join([question, *lettered])


def from_mmlu_pro(directory: Path) -> RoutingData:
    """`questions.jsonl` + `outputs_long.csv.gz` (question_id, model, pred, correct, output_chars).

    The question text is `question_text(question, options)`; task = category; output_tokens =
    output_chars / 4; answer = the model's extracted letter (`pred`; none where it could not be parsed).
    A (question, model) pair without a row stays unknown. No split and no cost: split by id afterwards,
    and take prices from a pool file.
    """
    directory = require_dir(Path(directory), "mmlu-pro", ("questions.jsonl", "outputs_long.csv.gz"))
    builder = RoutingDataBuilder()
    rows: dict[str, int] = {}
    questions_path = directory / "questions.jsonl"
    for line, item in iter_jsonl(questions_path):
        where = f"{questions_path}:{line}"
        question_id = field(item, "question_id", (int, str), where)
        options = field(item, "options", list, where)
        if not all(isinstance(o, str) for o in options):
            raise DataError(f"{where}: 'options' should be a list of strings")
        text = question_text(field(item, "question", str, where), options)
        category = field(item, "category", str, where)
        rows[str(question_id)] = builder.question(str(question_id), text, task=category, where=where)

    outputs_path = directory / "outputs_long.csv.gz"
    for line, row in CsvRows(outputs_path, ("question_id", "model", "correct")):
        where = f"{outputs_path}:{line}"
        index = rows.get(row["question_id"].strip())
        if index is None:
            raise DataError(f"{where}: question_id {row['question_id']!r} is not in {questions_path.name}")
        label = parse_label(row["correct"], where, "correct")
        if math.isnan(label):
            continue
        chars = parse_number(row.get("output_chars", ""), where, "output_chars")
        builder.cell(
            index,
            row["model"].strip(),
            label,
            output_tokens=chars / CHARS_PER_TOKEN,
            answer=row.get("pred", "").strip() or None,
            where=where,
        )
    return builder.build()
