"""The dry run: ask a small sample of every model, measure real tokens, extrapolate the full run's cost."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any

from ladder.core.pool import ModelSpec
from ladder.core.pricing import estimate_tokens, price_usd
from ladder.training.collect.calls import prompt_chars
from ladder.training.collect.questions import Question
from ladder.training.collect.runner import upstream_key
from ladder.training.collect.store import Answer

SAMPLE_SIZE = 5


def sample_questions(questions: Sequence[Question], size: int = SAMPLE_SIZE) -> list[Question]:
    """``size`` questions spread evenly over the file (not just its head, which is often one task)."""
    if len(questions) <= size:
        return list(questions)
    step = len(questions) / size
    return [questions[int(i * step)] for i in range(size)]


@dataclass(frozen=True)
class ModelEstimate:
    """One model's extrapolated share of the full run."""

    model: str
    sample_answers: int
    sample_failures: int
    calls: int
    remaining_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    remaining_cost_usd: float
    mean_latency_s: float
    time_s: float


def estimate(
    models: Sequence[ModelSpec],
    questions: Sequence[Question],
    sample: Sequence[Question],
    answers: Sequence[Answer],
    done: set[tuple[str, str]],
    concurrency: int,
) -> dict[str, Any]:
    """Per model: calls, tokens, cost and time for every question, from what the sample really used.

    Input tokens scale with each question's length (real tokens per estimated token in the sample); output
    tokens are the sample's mean per answer, failures included (filling ``max_tokens`` is paid for too).
    Time assumes each upstream serves ``concurrency`` calls at once, its models one after another.
    """
    sample_ids = {q.id for q in sample}
    by_model: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        if answer.question_id in sample_ids:
            by_model[answer.model].append(answer)
    per_model: list[ModelEstimate] = []
    for spec in models:
        got = by_model.get(spec.name, [])
        estimated = {q.id: estimate_tokens(prompt_chars(spec, q)) for q in questions}
        sample_est = sum(estimated[a.question_id] for a in got if a.input_tokens is not None)
        sample_real = sum(a.input_tokens or 0 for a in got)
        ratio = sample_real / sample_est if sample_est else 1.0
        out_mean = fmean([a.output_tokens or 0 for a in got]) if got else 0.0
        latency = fmean([a.latency_s for a in got]) if got else 0.0
        remaining = [q for q in questions if (q.id, spec.name) not in done]
        in_tokens = sum(estimated.values()) * ratio
        remaining_in = sum(estimated[q.id] for q in remaining) * ratio
        per_model.append(
            ModelEstimate(
                model=spec.name,
                sample_answers=len(got),
                sample_failures=sum(1 for a in got if not a.ok),
                calls=len(questions),
                remaining_calls=len(remaining),
                input_tokens=round(in_tokens),
                output_tokens=round(out_mean * len(questions)),
                cost_usd=price_usd(spec, in_tokens, out_mean * len(questions)),
                remaining_cost_usd=price_usd(spec, remaining_in, out_mean * len(remaining)),
                mean_latency_s=latency,
                time_s=latency * len(remaining) / concurrency,
            )
        )
    busy: dict[str, float] = defaultdict(float)
    for spec, row in zip(models, per_model, strict=True):
        busy[upstream_key(spec)] += row.time_s
    return {
        "questions": len(questions),
        "sample_questions": len(sample),
        "models": [asdict(row) for row in per_model],
        "total": {
            "calls": sum(r.calls for r in per_model),
            "remaining_calls": sum(r.remaining_calls for r in per_model),
            "cost_usd": sum(r.cost_usd for r in per_model),
            "remaining_cost_usd": sum(r.remaining_cost_usd for r in per_model),
            "time_s": max(busy.values(), default=0.0),
        },
    }
