"""`ladder retrain`: train on recent traffic labels, and keep the candidate only if it beats what serves."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ladder.core.checkpoint import Checkpoint
from ladder.core.errors import DataError
from ladder.core.head import OnnxHead
from ladder.core.policy import ChoiceOptions, choose
from ladder.core.pool import PoolConfig
from ladder.training._builder import RoutingDataBuilder
from ladder.training._table import RoutingData
from ladder.training.embed import Progress, embed_texts
from ladder.training.metrics import auc

if TYPE_CHECKING:
    from ladder.training.train import TrainingSpec

OBJECTIVES = {
    "brier": "mean squared error of P(correct) on every held-out label (lower is better)",
    "log-loss": "mean log loss of P(correct) on every held-out label (lower is better)",
    "auc": "mean per-model AUC of P(correct) on the held-out labels (higher is better)",
    "accuracy": "accuracy of the routed model at the pool's tolerance, on held-out questions labelled for "
    "every pool model (higher is better)",
}
LOWER_IS_BETTER = frozenset({"brier", "log-loss"})


@dataclass(frozen=True)
class RetrainSpec:
    """The promotion rule: the candidate must beat the serving checkpoint by ``margin`` on ``objective``."""

    training: TrainingSpec
    objective: str = "brier"
    margin: float = 0.0
    min_labels: int = 30

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise DataError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")


def merge(parts: Sequence[RoutingData]) -> RoutingData:
    """One table from several (splits dropped: every part given is training data)."""
    builder = RoutingDataBuilder()
    for number, part in enumerate(parts):
        for i, qid in enumerate(part.question_ids):
            where = f"training part {number + 1}, question {qid}"
            row = builder.question(qid, part.questions[i], task=part.tasks[i], where=where)
            for j, model in enumerate(part.models):
                if not math.isnan(part.labels[i, j]):
                    builder.cell(
                        row,
                        model,
                        float(part.labels[i, j]),
                        cost_usd=float(part.costs[i, j]),
                        output_tokens=float(part.output_tokens[i, j]),
                        where=where,
                    )
    return builder.build()


def held_out(data: RoutingData, training: RoutingData, labels: Sequence[str]) -> tuple[RoutingData, int]:
    """Held-out questions with at least one pool label, minus any whose text the candidate trained on."""
    seen = set(training.questions)
    present = [m for m in labels if m in data.models]
    if not present:
        raise DataError(f"the held-out rows have no labels for the pool's models {list(labels)}")
    known = ~np.isnan(data.labels[:, [data.models.index(m) for m in present]]).all(axis=1)
    fresh = np.array([q not in seen for q in data.questions], dtype=bool)
    return data.subset(known & fresh), int((known & ~fresh).sum())


def scores(
    checkpoint: Checkpoint, texts: Sequence[str], labels: Sequence[str], progress: Progress | None
) -> np.ndarray:
    """P(correct) [questions, pool models] from a checkpoint's own encoder and head."""
    checkpoint.require_models(labels)
    enc = checkpoint.manifest.encoder
    max_tokens = int(checkpoint.manifest.training.settings.get("max_tokens", 512))
    x = embed_texts(list(texts), enc.name, enc.variant, max_tokens, progress)
    p = OnnxHead(checkpoint.head_path).predict(x)
    return np.asarray(p[:, [checkpoint.models.index(m) for m in labels]], dtype=np.float64)


def metrics(p: np.ndarray, y: np.ndarray, costs: np.ndarray, tolerance: float) -> dict[str, float | None]:
    """Every objective on the known cells of ``y`` (NaN = unknown)."""
    known = ~np.isnan(y)
    q, t = np.clip(p[known], 1e-6, 1 - 1e-6), y[known]
    found = [auc(p[known[:, j], j], y[known[:, j], j]) for j in range(y.shape[1]) if known[:, j].any()]
    areas = [a for a in found if a is not None and not math.isnan(a)]
    complete = known.all(axis=1)
    accuracy = None
    if complete.any():
        chosen = choose(p[complete], costs[complete], ChoiceOptions(tolerance=tolerance)).model
        accuracy = float(y[complete][np.arange(int(complete.sum())), chosen].mean())
    return {
        "brier": float(np.mean((q - t) ** 2)),
        "log-loss": float(-np.mean(t * np.log(q) + (1 - t) * np.log(1 - q))),
        "auc": float(np.mean(areas)) if areas else None,
        "accuracy": accuracy,
    }


def pool_costs(data: RoutingData, pool: PoolConfig) -> np.ndarray:
    """Expected cost per question and model: the pool's prices at the question's length."""
    from ladder.training.costs import cost_matrix

    labels = [m.checkpoint_label for m in pool.models]
    return np.asarray(cost_matrix(data, list(pool.names), pool, labels), dtype=np.float64)


def decide(
    spec: RetrainSpec, serving: dict[str, Any], candidate: dict[str, Any], labels: int
) -> tuple[bool, str]:
    """Promote only on enough evidence, and only when the candidate is better by the margin."""
    name = spec.objective
    if labels < spec.min_labels:
        return False, f"only {labels} held-out labels (< {spec.min_labels}): not enough to judge"
    old, new = serving[name], candidate[name]
    if old is None or new is None:
        return False, f"{name} cannot be measured on these held-out rows"
    gain = old - new if name in LOWER_IS_BETTER else new - old
    verdict = "promoted" if gain >= spec.margin else "kept the serving checkpoint"
    return gain >= spec.margin, (
        f"{verdict}: {name} {old:.4f} -> {new:.4f} (gain {gain:+.4f}, margin {spec.margin:g})"
    )


def retrain(
    traffic: RoutingData,
    base: RoutingData | None,
    serving: Checkpoint,
    pool: PoolConfig,
    candidate_dir: Path,
    spec: RetrainSpec,
    data_files: Sequence[str],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train a candidate into ``candidate_dir`` and compare it with ``serving``; the report says which won."""
    if not any(s == "test" for s in traffic.splits):
        raise DataError("the traffic rows have no 'test' split to judge on: export them with --test-fraction")
    labels = [m.checkpoint_label for m in pool.models]
    has_train = any(s == "train" for s in traffic.splits)
    parts = ([base] if base is not None else []) + ([traffic.split("train")] if has_train else [])
    if not parts:
        raise DataError("nothing to train on: no traffic in the 'train' split and no --data")
    training = merge(parts)
    held, dropped = held_out(traffic.split("test"), training, labels)
    if len(held) == 0:
        raise DataError("no held-out traffic question is left once those seen in training are removed")
    from ladder.training.train import train  # PyTorch: loaded only when there is something to train

    started = datetime.now(UTC)
    candidate = train(training, list(data_files), candidate_dir, pool, spec.training, progress, force=True)
    y = np.full((len(held), len(labels)), np.nan)
    for j, label in enumerate(labels):
        if label in held.models:
            y[:, j] = held.labels[:, held.models.index(label)]
    costs = pool_costs(held, pool)
    tolerance = pool.routing.tolerance
    serving_m = metrics(scores(serving, held.questions, labels, progress), y, costs, tolerance)
    candidate_m = metrics(scores(candidate, held.questions, labels, progress), y, costs, tolerance)
    count = int((~np.isnan(y)).sum())
    promote, reason = decide(spec, serving_m, candidate_m, count)
    return {
        "objective": spec.objective,
        "objective_means": OBJECTIVES[spec.objective],
        "margin": spec.margin,
        "training_questions": len(training),
        "traffic_train_questions": sum(1 for s in traffic.splits if s == "train"),
        "heldout_questions": len(held),
        "heldout_labels": count,
        "heldout_dropped_seen_in_training": dropped,
        "serving": {"checkpoint": str(serving.directory), **serving_m},
        "candidate": {"checkpoint": str(candidate_dir), **candidate_m},
        "promote": promote,
        "reason": reason,
        "started": started.isoformat(timespec="seconds"),
    }


def discard(candidate_dir: Path) -> None:
    shutil.rmtree(candidate_dir, ignore_errors=True)
