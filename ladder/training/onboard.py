"""`ladder onboard`: add a model to a trained router from a small labelled sample, the rest kept fixed.

The trained head (`head.onnx`) is left as it is. A new column is fitted for the new model
(`ladder.training.onboard_fit`) and appended to it inside one ONNX graph: `embedding -> p_correct` with one
more output column. The new checkpoint's manifest carries the new model's cross-validated metrics, its
cost and output tokens where the sample has them, and a record of the onboarding.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import compose, helper

from ladder.core.checkpoint import Checkpoint, Manifest, save_checkpoint
from ladder.core.errors import CheckpointError, DataError, DataWarning
from ladder.core.head import OnnxHead
from ladder.training.dataset import RoutingData
from ladder.training.embed import Progress, embed_texts
from ladder.training.onboard_fit import LinearPart, NewModelColumn, OnboardSettings, fit_new_model
from ladder.training.oof import out_of_fold_p
from ladder.training.train import cv_report, training_rows

MIN_LABELS = 20
MIN_PER_CLASS = 5


@dataclass(frozen=True)
class OnboardResult:
    checkpoint: Checkpoint
    model: str
    labels: int
    metrics: dict[str, float | None]
    strength: float
    in_training: int


def new_model_name(checkpoint: Checkpoint, data: RoutingData, model: str | None) -> str:
    """The one model in ``data`` the checkpoint lacks (or ``model``, checked)."""
    if model is not None:
        if model not in data.models:
            raise DataError(f"--model {model!r}: the data has no rows for it; it has {data.models}")
        if model in checkpoint.models:
            raise DataError(f"--model {model!r} is already in the checkpoint {checkpoint.directory}")
        return model
    new = [m for m in data.models if m not in checkpoint.models]
    if not new:
        raise DataError(
            f"every model in the data ({data.models}) is already in the checkpoint; onboarding needs rows "
            "for a model the checkpoint lacks"
        )
    if len(new) > 1:
        raise DataError(f"the data has several models the checkpoint lacks ({new}); choose one with --model")
    return new[0]


def sample_labels(data: RoutingData, model: str) -> tuple[RoutingData, np.ndarray]:
    """The questions labelled for ``model`` and their labels; refuses samples too small to fit on."""
    others = [m for m in data.models if m != model]
    if others:
        warnings.warn(
            f"the onboarding data also has rows for {others}: only {model!r}'s rows are used",
            DataWarning,
            stacklevel=3,
        )
    column = data.labels[:, data.models.index(model)]
    rows = np.nonzero(~np.isnan(column))[0]
    y = column[rows].astype(np.float64)
    right, wrong = int((y >= 0.5).sum()), int((y < 0.5).sum())
    if len(y) < MIN_LABELS or min(right, wrong) < MIN_PER_CLASS:
        raise DataError(
            f"{model!r} has {len(y)} labels ({right} right, {wrong} wrong); onboarding needs at least "
            f"{MIN_LABELS}, with {MIN_PER_CLASS} of each"
        )
    return data.subset(rows), y


def extend_head(base_head: Path, part: LinearPart, dim: int, out: Path) -> None:
    """Write ``base_head`` with the new column appended as one ONNX graph (embedding -> p_correct)."""
    column = NewModelColumn(part).eval()
    with tempfile.TemporaryDirectory() as scratch:
        part_path = Path(scratch) / "part.onnx"
        torch.onnx.export(
            column,
            (torch.zeros(2, dim), torch.full((2, len(part.feature_mean) - part.pca_basis.shape[1]), 0.5)),
            str(part_path),
            input_names=["embedding", "base_p_correct"],
            output_names=["p_correct"],
            dynamic_axes={
                "embedding": {0: "batch"},
                "base_p_correct": {0: "batch"},
                "p_correct": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
        part_graph = onnx.load(str(part_path)).graph
    base = onnx.load(str(base_head))
    names = [*(n.name for n in base.graph.node), *(i.name for i in base.graph.initializer)]
    step = len({name.split("/")[0] for name in names if name.startswith("onboard")})
    prefix = f"onboard{step}/"
    joint = f"{prefix}base_p_correct"  # the base head's output, fed to the new column
    for node in base.graph.node:
        node.output[:] = [joint if o == "p_correct" else o for o in node.output]
    part_graph = compose.add_prefix_graph(part_graph, prefix, rename_inputs=False, rename_outputs=False)
    for node in part_graph.node:
        node.input[:] = [joint if i == "base_p_correct" else i for i in node.input]
    graph = helper.make_graph(
        [*base.graph.node, *part_graph.node],
        base.graph.name,
        inputs=list(base.graph.input),
        outputs=list(part_graph.output),
        initializer=[*base.graph.initializer, *part_graph.initializer],
    )
    model = helper.make_model(graph, opset_imports=list(base.opset_import), ir_version=base.ir_version)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def _check_head(path: Path, base_head: Path, part: LinearPart, sample: np.ndarray) -> None:
    """The written graph must equal the base head plus the fitted column, to 1e-5."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["p_correct"], {"embedding": sample.astype(np.float32)})
    base_p = OnnxHead(base_head).predict(sample)
    want = np.concatenate([base_p, part.predict(sample, base_p)[:, None]], axis=1)
    gap = float(np.abs(got - want).max())
    if gap > 1e-5:
        raise CheckpointError(f"the onboarded ONNX head differs from the fitted one by {gap:.2e}")


def _mean_where_known(values: np.ndarray) -> float | None:
    known = values[~np.isnan(values)]
    return float(known.mean()) if len(known) else None


def onboard(
    checkpoint: Checkpoint,
    data: RoutingData,
    data_files: list[str],
    out: Path,
    model: str | None = None,
    settings: OnboardSettings | None = None,
    progress: Progress | None = None,
    train_data: RoutingData | None = None,
) -> OnboardResult:
    """Fit ``model`` (default: the one model the checkpoint lacks) and write the extended checkpoint.

    ``train_data`` is the base checkpoint's training data: sample questions found in it are given the
    head's out-of-fold scores as features (see ``honest_base_p``).
    """
    settings = settings or OnboardSettings()
    name = new_model_name(checkpoint, data, model)
    sample, y = sample_labels(data, name)
    if out.resolve() == checkpoint.directory.resolve():
        raise CheckpointError(f"--out {out} is the base checkpoint; write the onboarded one elsewhere")
    enc = checkpoint.manifest.encoder
    max_tokens = int(checkpoint.manifest.training.settings.get("max_tokens", 512))
    x = embed_texts(sample.questions, enc.name, enc.variant, max_tokens, progress)
    if progress:
        progress("fitting the new model's column", 0, 1)
    base_p = OnnxHead(checkpoint.head_path).predict(x)
    in_training = 0
    if train_data is not None:
        base_p, in_training = honest_base_p(checkpoint, sample, base_p, train_data, progress)
    part, oof = fit_new_model(x, base_p, y, settings)
    if progress:
        progress("fitting the new model's column", 1, 1)
    metrics = cv_report(oof[:, None], y[:, None], [name])[name]
    column = sample.models.index(name)
    sample_p = np.concatenate([base_p, part.predict(x, base_p)[:, None]], axis=1)
    manifest = _extended_manifest(
        checkpoint.manifest, name, sample, column, metrics, data_files, settings, part, sample_p
    )
    record = manifest.training.settings["onboarded"][-1]
    record["questions_in_base_training_scored_out_of_fold"] = in_training
    with tempfile.TemporaryDirectory() as scratch:
        head = Path(scratch) / "head.onnx"
        extend_head(checkpoint.head_path, part, enc.dim, head)
        _check_head(head, checkpoint.head_path, part, x[:64])
        saved = save_checkpoint(out, manifest, head)
    return OnboardResult(saved, name, len(y), metrics, part.strength, in_training)


def honest_base_p(
    checkpoint: Checkpoint,
    sample: RoutingData,
    base_p: np.ndarray,
    train_data: RoutingData,
    progress: Progress | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """``base_p`` with the rows of questions the head was trained on replaced by out-of-fold scores.

    On its own training questions the head's scores are in-sample (its neighbour vote even counts the
    question's own labels), so a column fitted on them would trust them more than they deserve on new
    questions. The out-of-fold scores come from refitting the head fold by fold (`ladder.training.oof`, cached).
    Returns the scores and how many rows were replaced.
    """
    split = checkpoint.manifest.training.settings.get("split")
    rows = training_rows(train_data, split if isinstance(split, str) else None)
    missing = [m for m in checkpoint.models if m not in rows.models]
    if missing:
        raise DataError(f"the base's training data has no labels for {missing}")
    labels = rows.labels[:, [rows.models.index(m) for m in checkpoint.models]]
    keep = np.nonzero(~np.isnan(labels).all(axis=1))[0]
    rows, labels = rows.subset(keep), labels[keep]
    where = {q: i for i, q in enumerate(rows.questions)}
    hits = [(i, where[q]) for i, q in enumerate(sample.questions) if q in where]
    if not hits:
        return base_p, 0
    enc = checkpoint.manifest.encoder
    max_tokens = int(checkpoint.manifest.training.settings.get("max_tokens", 512))
    if embed is None:
        x = embed_texts(rows.questions, enc.name, enc.variant, max_tokens, progress)
    else:
        x = embed(rows.questions)
    oof = out_of_fold_p(checkpoint, x, labels, progress)
    honest = base_p.copy()
    mine, theirs = (np.asarray(v) for v in zip(*hits, strict=True))
    honest[mine] = oof[theirs]
    return honest, len(hits)


def _extended_manifest(
    base: Manifest,
    name: str,
    sample: RoutingData,
    column: int,
    metrics: dict[str, float | None],
    data_files: list[str],
    settings: OnboardSettings,
    part: LinearPart,
    sample_p: np.ndarray,
) -> Manifest:
    tokens = _mean_where_known(sample.output_tokens[:, column])
    cost = _mean_where_known(sample.costs[:, column])
    reference = base.reference_p_correct
    if reference and part.pca_basis.shape[1] == 0:
        ref = np.asarray(reference, dtype=np.float32)
        new = part.predict(np.zeros((len(ref), len(part.pca_mean)), dtype=np.float32), ref)
        reference = np.round(np.concatenate([ref, new[:, None]], axis=1), 5).tolist()
    elif reference:
        # the new column needs the embeddings, which the base reference rows lack: use the sample's rows
        rows = np.random.default_rng(settings.seed).permutation(len(sample_p))[: len(reference)]
        reference = np.round(sample_p[rows], 5).tolist()
    record: dict[str, Any] = {
        "model": name,
        "data_files": data_files,
        "data_digest": sample.digest(),
        "labels": len(sample.questions),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "method": "logistic regression on the fixed head's logits"
        + (f" and {part.pca_basis.shape[1]} principal components" if part.pca_basis.shape[1] else ""),
        "l2_inverse_strength": part.strength,
        **settings.to_dict(),
    }
    settings_out = dict(base.training.settings)
    settings_out["onboarded"] = [*settings_out.get("onboarded", []), record]
    return base.model_copy(
        update={
            "models": [*base.models, name],
            "head_sha256": "",
            "expected_output_tokens": {
                **base.expected_output_tokens,
                **({name: tokens} if tokens is not None else {}),
            },
            "data_cost_per_request": {
                **base.data_cost_per_request,
                **({name: cost} if cost is not None else {}),
            },
            "training": base.training.model_copy(update={"settings": settings_out}),
            "cv_metrics": {**base.cv_metrics, name: metrics},
            "reference_p_correct": reference,
        }
    )
