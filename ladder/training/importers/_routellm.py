"""Importer for RouteLLM's evaluation data (lm-sys/RouteLLM `routellm/evals/`): MMLU, GSM8K, MT-Bench."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Literal

from ladder.core.errors import DataError
from ladder.training.dataset import RoutingData, RoutingDataBuilder
from ladder.training.importers._common import CsvRows, field, iter_jsonl, parse_label, require_dir

Benchmark = Literal["mmlu", "gsm8k", "mt_bench"]
BENCHMARKS: tuple[Benchmark, ...] = ("mmlu", "gsm8k", "mt_bench")

CHARS_PER_TOKEN = 4.0
"""GSM8K output tokens are estimated as len(response) / CHARS_PER_TOKEN."""


def _contaminated(directory: Path, benchmark: Benchmark) -> set[str]:
    """The `eval_prompt`s RouteLLM drops because they overlap its router-training data."""
    path = directory / f"{benchmark}_contaminated_prompts.jsonl"
    return {field(item, "eval_prompt", str, f"{path}:{line}") for line, item in iter_jsonl(path)}


def _add_response_table(
    builder: RoutingDataBuilder, path: Path, prefix: str, task: str, dropped: set[str]
) -> None:
    """A `prompt, <model>..., [<model>_response...]` CSV: boolean correctness per model, and the response
    (kept as the answer) where the file has one."""
    rows = CsvRows(path, ("prompt",))
    models = [c for c in rows.columns if c != "prompt" and not c.endswith("_response")]
    if not models:
        rows.close()
        raise DataError(f"{path}: no model columns; columns found: {', '.join(rows.columns)}")
    for number, (line, row) in enumerate(rows):
        text = row["prompt"]
        if text in dropped:
            continue
        where = f"{path}:{line}"
        index = builder.question(f"{prefix}-{number}", text, task=task, where=where)
        for model in models:
            label = parse_label(row[model], where, model)
            if math.isnan(label):
                continue
            response = row.get(f"{model}_response")
            tokens = len(response) / CHARS_PER_TOKEN if response else math.nan
            builder.cell(index, model, label, output_tokens=tokens, answer=response or None, where=where)


def _add_mt_bench(
    builder: RoutingDataBuilder, directory: Path, dropped: set[str], threshold: float | None
) -> None:
    questions_path, judgements_path = directory / "question.jsonl", directory / "judgements.jsonl"
    kept: dict[int, tuple[str, str, str]] = {}
    known: set[int] = set()
    for line, item in iter_jsonl(questions_path):
        where = f"{questions_path}:{line}"
        question_id = field(item, "question_id", int, where)
        turns = field(item, "turns", list, where)
        if not turns or not all(isinstance(t, str) for t in turns):
            raise DataError(f"{where}: 'turns' should be a non-empty list of strings")
        known.add(question_id)
        if not any(t in dropped for t in turns):
            kept[question_id] = (turns[0], field(item, "category", str, where), where)

    scores: defaultdict[tuple[int, str], list[float]] = defaultdict(list)
    for line, item in iter_jsonl(judgements_path):
        where = f"{judgements_path}:{line}"
        question_id = field(item, "question_id", int, where)
        if question_id not in known:
            raise DataError(f"{where}: question_id {question_id} is not in {questions_path.name}")
        score = float(field(item, "score", (int, float), where))
        if score < 0:  # FastChat writes -1 when the judge's verdict could not be parsed
            continue
        if not 1.0 <= score <= 10.0:
            raise DataError(f"{where}: score must be in 1-10 (or -1 for a failed judgement), got {score}")
        if question_id in kept:
            scores[(question_id, field(item, "model", str, where))].append(score)

    rows = {
        qid: builder.question(f"mt_bench-{qid}", text, task=category, where=where)
        for qid, (text, category, where) in kept.items()
    }
    for (question_id, model), values in scores.items():
        mean = sum(values) / len(values)
        label = mean / 10.0 if threshold is None else float(mean >= threshold)
        builder.cell(rows[question_id], model, label, where=f"{judgements_path}: question {question_id}")


def from_routellm(
    directory: Path,
    benchmark: Benchmark,
    *,
    drop_contaminated: bool = True,
    mt_bench_threshold: float | None = None,
) -> RoutingData:
    """One of RouteLLM's three benchmarks (GPT-4-1106 vs Mixtral-8x7B), as RouteLLM evaluates it.

    - `mmlu`: `mmlu_responses/mmlu_<subject>.csv`, task = subject, id `mmlu-<subject>-<row>` (the same
      prompt can occur more than once: 14,042 rows, each its own question).
    - `gsm8k`: `gsm8k_responses.csv`, task "gsm8k", id `gsm8k-<row>`; output_tokens = len(response) / 4;
      the response is kept as the answer.
    - `mt_bench`: `question.jsonl` + `judgements.jsonl` (GPT-4 single-answer grading, 1-10, one per
      question, model and turn). The text routed on is the FIRST turn (RouteLLM routes on it). The label
      averages the model's scores over both turns (all judges), as RouteLLM's score does, then is
      graded as mean / 10 (in [0.1, 1]; mean label × 10 is the MT-Bench score) or, with
      `mt_bench_threshold`, binary: 1.0 where the mean score >= threshold. Judgements of -1 (failed)
      are skipped. Task = category, id `mt_bench-<question_id>`.

    With `drop_contaminated` (the default, as RouteLLM does), prompts listed in
    `<benchmark>_contaminated_prompts.jsonl` are left out (for MT-Bench: if either turn is listed).
    """
    if benchmark not in BENCHMARKS:
        raise DataError(f"unknown RouteLLM benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    needs = {
        "mmlu": ("mmlu_responses",),
        "gsm8k": ("gsm8k_responses.csv",),
        "mt_bench": ("question.jsonl", "judgements.jsonl"),
    }[benchmark]
    if drop_contaminated:
        needs = (*needs, f"{benchmark}_contaminated_prompts.jsonl")
    directory = require_dir(Path(directory), f"routellm-{benchmark.replace('_', '-')}", needs)
    dropped = _contaminated(directory, benchmark) if drop_contaminated else set()
    builder = RoutingDataBuilder()
    if benchmark == "mmlu":
        files = sorted((directory / "mmlu_responses").glob("mmlu_*.csv"))
        if not files:
            raise DataError(f"{directory / 'mmlu_responses'}: no mmlu_<subject>.csv files")
        for path in files:
            subject = path.stem.removeprefix("mmlu_")
            _add_response_table(builder, path, f"mmlu-{subject}", subject, dropped)
    elif benchmark == "gsm8k":
        _add_response_table(builder, directory / "gsm8k_responses.csv", "gsm8k", "gsm8k", dropped)
    else:
        _add_mt_bench(builder, directory, dropped, mt_bench_threshold)
    return builder.build()
