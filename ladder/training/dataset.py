"""Ladder's native routing data: the RoutingData table, the canonical CSV format and train/test splits.

The canonical long CSV has one row per (question, model) with a known label:
`question_id,question,model,correct[,cost_usd][,output_tokens][,task][,split][,answer][,answer_logprob]`
`[,confidence_kind][,confidence_cost_usd][,latency_ms][,input_tokens]`.
`correct` is in [0, 1] (graded labels allowed); the optional columns may be absent or empty. `answer` is
the model's answer text and `answer_logprob` its confidence (cascades use them): its mean token
log-probability, or what `confidence_kind` says; `-inf` and exact zeros are real values.
A missing row means the label is UNKNOWN (NaN in memory), never wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from ladder.core.errors import DataError
from ladder.training._builder import RoutingDataBuilder
from ladder.training._canonical import REQUIRED_COLUMNS, open_text, read_canonical, write_canonical
from ladder.training._summary import DataSummary, ModelSummary
from ladder.training._table import CANONICAL_COLUMNS, RoutingData

__all__ = [
    "CANONICAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "DataSummary",
    "ModelSummary",
    "RoutingData",
    "RoutingDataBuilder",
    "open_text",
    "read_canonical",
    "split_by_id",
    "write_canonical",
]


def _unit_hash(question_id: str, seed: int) -> float:
    """A number in [0, 1) from sha256(seed, id): the same on every run, machine and Python version."""
    digest = hashlib.sha256(f"{seed}\x00{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_by_id(data: RoutingData, test_fraction: float = 0.2, seed: int = 0) -> RoutingData:
    """A copy of `data` whose `splits` say "train" or "test", decided per question id.

    A question goes to test when sha256(seed, question_id), read as a number in [0, 1), falls below
    `test_fraction`: deterministic across runs, machines and Python versions, and a question keeps its
    side when others are added or removed. Any split values already present are replaced. Take the
    halves with `.split("train")` and `.split("test")`.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    splits: list[str | None] = ["test" if _unit_hash(q, seed) < test_fraction else "train" for q in data.question_ids]
    return replace(
        data,
        labels=data.labels.copy(),
        costs=data.costs.copy(),
        output_tokens=data.output_tokens.copy(),
        **data.map_cells(lambda a: a.copy()),
        question_ids=list(data.question_ids),
        questions=list(data.questions),
        models=list(data.models),
        tasks=list(data.tasks),
        splits=splits,
    )
