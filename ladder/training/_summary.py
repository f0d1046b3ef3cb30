"""What a routing data set holds, per model and overall, for a human or a log line."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelSummary:
    """One model: how many labels are known, their share of the questions, and their mean."""

    known: int
    coverage: float
    accuracy: float
    mean_cost_usd: float
    mean_output_tokens: float


@dataclass(frozen=True)
class DataSummary:
    """Counts, coverage, oracle accuracy (best known label per question, averaged) and per-model figures."""

    questions: int
    models: int
    known_cells: int
    coverage: float
    oracle_accuracy: float
    tasks: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    per_model: dict[str, ModelSummary] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"{self.questions} questions × {self.models} models, {self.known_cells} known labels "
            f"({self.coverage:.1%} coverage), oracle accuracy {self.oracle_accuracy:.3f}"
        ]
        if self.splits:
            lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in sorted(self.splits.items())))
        if self.tasks:
            lines.append(f"tasks: {len(self.tasks)}")
        width = max((len(m) for m in self.per_model), default=0)
        ranked = sorted(self.per_model.items(), key=lambda kv: -np.nan_to_num(kv[1].accuracy, nan=-1.0))
        for model, s in ranked:
            lines.append(f"  {model:<{width}}  accuracy {s.accuracy:.3f}  coverage {s.coverage:.1%}")
        return "\n".join(lines)


def _nanmean(values: FloatArray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def summarize(
    labels: FloatArray,
    costs: FloatArray,
    output_tokens: FloatArray,
    models: Sequence[str],
    tasks: Sequence[str | None],
    splits: Sequence[str | None],
) -> DataSummary:
    """Summarise label/cost/token matrices [questions, models] (NaN = unknown)."""
    n = labels.shape[0]
    known = ~np.isnan(labels)
    per_model: dict[str, ModelSummary] = {}
    for j, model in enumerate(models):
        col = known[:, j]
        count = int(col.sum())
        per_model[model] = ModelSummary(
            known=count,
            coverage=count / n if n else 0.0,
            accuracy=float(labels[col, j].mean()) if count else math.nan,
            mean_cost_usd=_nanmean(costs[:, j]),
            mean_output_tokens=_nanmean(output_tokens[:, j]),
        )
    any_known = known.any(axis=1)
    oracle = float(np.nanmax(labels[any_known], axis=1).mean()) if any_known.any() else math.nan
    return DataSummary(
        questions=n,
        models=len(models),
        known_cells=int(known.sum()),
        coverage=float(known.mean()) if known.size else 0.0,
        oracle_accuracy=oracle,
        tasks=dict(Counter(t for t in tasks if t is not None)),
        splits=dict(Counter(s for s in splits if s is not None)),
        per_model=per_model,
    )
