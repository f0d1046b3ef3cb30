"""`ladder train`: canonical data in, a checkpoint (manifest + ONNX head) out."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ladder.core.checkpoint import (
    Checkpoint,
    EncoderIdentity,
    Manifest,
    Recommendation,
    TrainingRecord,
    save_checkpoint,
)
from ladder.core.encoder import EncoderInfo
from ladder.core.errors import CheckpointError, DataError
from ladder.core.home import encoder_dir
from ladder.core.pool import PoolConfig
from ladder.training.costs import mean_output_tokens, training_costs
from ladder.training.dataset import RoutingData
from ladder.training.embed import Progress, embed_texts
from ladder.training.fit import HeadSettings, fit_head
from ladder.training.head_model import export_head
from ladder.training.metrics import DEFAULT_TOLERANCES, auc, expected_calibration_error, sweep
from ladder.training.objectives import Objective, choose_point

REFERENCE_ROWS = 512


@dataclass(frozen=True)
class TrainingSpec:
    encoder: str = "multilingual-e5-small"
    variant: str = "int8"
    max_tokens: int = 512
    split: str | None = "train"
    head: HeadSettings = field(default_factory=HeadSettings)


def select_models(data: RoutingData, pool: PoolConfig | None) -> tuple[list[str], list[str]]:
    """(names, data labels) of the models to train for: the pool's, or every model in the data."""
    if pool is None:
        return list(data.models), list(data.models)
    labels = [m.checkpoint_label for m in pool.models]
    missing = [label for label in labels if label not in data.models]
    if missing:
        raise DataError(f"the data has no labels for pool models {missing}; it has {data.models}")
    return list(pool.names), labels


def training_rows(data: RoutingData, split: str | None) -> RoutingData:
    if split is None or all(s in (None, "") for s in data.splits):
        return data
    selected = data.split(split)
    if len(selected.questions) == 0:
        raise DataError(f"no rows have split {split!r}")
    return selected


def cv_report(p: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Out-of-fold metrics per model; AUC is None where a model's known labels hold one class only."""
    report: dict[str, dict[str, float | None]] = {}
    for j, name in enumerate(names):
        known = ~np.isnan(labels[:, j])
        y, q = labels[known, j], p[known, j]
        area = auc(q, y)
        report[name] = {
            "accuracy": float(y.mean()),
            "auc": area,
            "ece": expected_calibration_error(q, y),
            "brier": float(np.mean((q - y) ** 2)),
            "labels": float(known.sum()),
        }
    return report


def _check_writable(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a folder; give --out a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CheckpointError(
            f"{out}: already exists and is not empty; choose another --out, or pass --force to replace it"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{out.parent}: cannot create the checkpoint's parent folder ({exc})") from exc


def _export_and_check(fitted_head: torch.nn.Module, embeddings: np.ndarray, path: Path) -> None:
    export_head(fitted_head, path)  # type: ignore[arg-type]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sample = embeddings[:64].astype(np.float32)
    (onnx_p,) = session.run(["p_correct"], {"embedding": sample})
    with torch.no_grad():
        torch_p = fitted_head(torch.as_tensor(sample)).numpy()
    gap = float(np.abs(onnx_p - torch_p).max())
    if gap > 1e-5:
        raise CheckpointError(f"ONNX head differs from the torch head by {gap:.2e} (limit 1e-5)")


def train(
    data: RoutingData,
    data_files: Sequence[str],
    out: Path,
    pool: PoolConfig | None = None,
    spec: TrainingSpec = TrainingSpec(),
    progress: Progress | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    force: bool = False,
) -> Checkpoint:
    """Train a head for ``data`` and write the checkpoint to ``out`` (an existing one only with ``force``).

    ``embed`` maps the training questions to their embeddings (default: the spec's encoder, in process,
    with its cache); it must be the encoder the manifest names.
    """
    data = training_rows(data, spec.split)
    names, labels_used = select_models(data, pool)
    columns = [data.models.index(label) for label in labels_used]
    labels = data.labels[:, columns]
    keep = ~np.isnan(labels).all(axis=1)
    if keep.sum() < 2 * spec.head.members:
        raise DataError(
            f"only {int(keep.sum())} questions have labels; training needs at least {2 * spec.head.members} "
            f"(twice --members, {spec.head.members}): label more questions, or lower --members (at least 2)"
        )
    data = data.subset(np.nonzero(keep)[0])
    labels = labels[keep]
    # everything the run needs is checked here, before the first expensive step (embedding)
    complete = ~np.isnan(labels).any(axis=1)
    if not complete.any():
        raise DataError(
            f"no question has labels for every model in {labels_used}; the recommended operating point "
            "is chosen on questions every model answered"
        )
    costs, cost_source = training_costs(data, names, pool, labels_used)
    _check_writable(out, force)
    info = EncoderInfo.load(encoder_dir(spec.encoder))
    if embed is None:
        embeddings = embed_texts(data.questions, spec.encoder, spec.variant, spec.max_tokens, progress)
    else:
        embeddings = embed(data.questions)
    fitted = fit_head(embeddings, labels, spec.head, progress)

    oof, y, c = fitted.oof_p[complete], labels[complete], costs[complete]
    points = sweep(oof, y, c, DEFAULT_TOLERANCES)
    best_single = float(np.nanmax(y.mean(axis=0)))
    index = choose_point(points, Objective("match-best"), best_single)
    chosen = points[index]
    rng = np.random.default_rng(spec.head.seed)
    reference = fitted.oof_p[rng.permutation(len(fitted.oof_p))[:REFERENCE_ROWS]]

    output_tokens = mean_output_tokens(data)
    data_costs = {
        label: float(np.nanmean(data.costs[:, data.models.index(label)]))
        for label in labels_used
        if not np.isnan(data.costs[:, data.models.index(label)]).all()
    }
    manifest = Manifest(
        models=labels_used,
        encoder=EncoderIdentity(name=info.name, dim=info.dim, source=info.source, variant=spec.variant),
        head_sha256="",
        expected_output_tokens={
            label: output_tokens[label] for label in labels_used if label in output_tokens
        },
        data_cost_per_request=data_costs,
        training=TrainingRecord(
            data_files=[str(f) for f in data_files],
            data_digest=data.digest(),
            questions=len(data.questions),
            seed=spec.head.seed,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            settings={
                **spec.head.to_dict(),
                "max_tokens": spec.max_tokens,
                "split": spec.split,
                "costs": cost_source,
            },
        ),
        cv_metrics=cv_report(fitted.oof_p, labels, labels_used),
        recommended=Recommendation(
            tolerance=DEFAULT_TOLERANCES[index],
            cv_accuracy=chosen.accuracy,
            cv_cost_per_1k=chosen.cost_per_1k,
            rule="cheapest tolerance whose cross-validated accuracy is within 0.5 points of the best single "
            "model's, on the training data's out-of-fold predictions",
        ),
        reference_p_correct=np.round(reference, 5).tolist(),
    )
    with tempfile.TemporaryDirectory() as scratch:
        head_path = Path(scratch) / "head.onnx"
        _export_and_check(fitted.head, embeddings, head_path)
        return save_checkpoint(out, manifest, head_path, oof=(data.question_ids, fitted.oof_p))
