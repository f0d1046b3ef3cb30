"""Checkpoints are versioned JSON + ONNX, checked on load, written atomically."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ladder.core.checkpoint import Checkpoint, EncoderIdentity, Manifest, TrainingRecord, save_checkpoint
from ladder.core.errors import CheckpointError
from ladder.core.head import OnnxHead
from ladder.training.head_model import MLP, RouterHead, export_head

MODELS = ["cheap", "dear"]


def make_checkpoint(directory: Path, dim: int = 8) -> Checkpoint:
    torch.manual_seed(0)
    head = RouterHead(
        np.zeros(dim, np.float32),
        np.eye(dim, 4, dtype=np.float32),
        [MLP(4, 8, 2, 0.0)],
        np.ones(2),
        np.zeros(2),
    )
    onnx_path = directory.parent / "head.onnx"
    export_head(head, onnx_path)
    manifest = Manifest(
        models=MODELS,
        encoder=EncoderIdentity(name="test-encoder", dim=dim),
        head_sha256="",
        training=TrainingRecord(
            data_files=["x.csv"], data_digest="d", questions=10, seed=0, created_at="now"
        ),
    )
    return save_checkpoint(directory, manifest, onnx_path)


def test_round_trip_and_onnx_head(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    loaded = Checkpoint.load(tmp_path / "ckpt")
    assert loaded.models == tuple(MODELS)
    p = OnnxHead(loaded.head_path).predict(np.random.default_rng(0).random((3, 8), dtype=np.float32))
    assert p.shape == (3, 2) and ((p > 0) & (p < 1)).all()
    assert checkpoint.manifest.head_sha256 == loaded.manifest.head_sha256


def test_corrupt_head_is_detected(tmp_path: Path) -> None:
    make_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "head.onnx").write_bytes(b"not onnx")
    with pytest.raises(CheckpointError, match="checksum"):
        Checkpoint.load(tmp_path / "ckpt")


def test_future_version_and_foreign_folder(tmp_path: Path) -> None:
    make_checkpoint(tmp_path / "ckpt")
    manifest = tmp_path / "ckpt" / "manifest.json"
    raw = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**raw, "version": 99}))
    with pytest.raises(CheckpointError, match="version 99 is not supported"):
        Checkpoint.load(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="not a Ladder checkpoint"):
        Checkpoint.load(tmp_path)


def test_pool_with_models_the_checkpoint_lacks(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    checkpoint.require_models(["cheap"])
    with pytest.raises(CheckpointError, match=r"\['gpt-9'\], which it cannot score"):
        checkpoint.require_models(["cheap", "gpt-9"])


def test_failed_save_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    make_checkpoint(tmp_path / "ckpt")
    before = (tmp_path / "ckpt" / "manifest.json").read_text()
    bad = Manifest.model_construct(
        **{**Checkpoint.load(tmp_path / "ckpt").manifest.__dict__, "models": object()}
    )
    with pytest.raises(Exception):  # noqa: B017 - any serialisation failure
        save_checkpoint(tmp_path / "ckpt", bad, tmp_path / "head.onnx")
    assert (tmp_path / "ckpt" / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "head.onnx"]


def test_a_model_with_one_class_of_labels_has_no_auc_and_still_loads(tmp_path: Path) -> None:
    """A model right on every training question has no AUC: the manifest records None and loads again."""
    from ladder.training.train import cv_report

    labels = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, np.nan]])
    p = np.array([[0.9, 0.2], [0.8, 0.7], [0.95, 0.4], [0.9, 0.5]])
    metrics = cv_report(p, labels, MODELS)
    assert metrics["cheap"]["auc"] is None and metrics["dear"]["auc"] == 1.0
    saved = make_checkpoint(tmp_path / "ckpt")
    manifest = saved.manifest.model_copy(update={"cv_metrics": metrics})
    directory = tmp_path / "ckpt2"
    save_checkpoint(directory, manifest, saved.head_path)
    assert Checkpoint.load(directory).manifest.cv_metrics["cheap"]["auc"] is None
