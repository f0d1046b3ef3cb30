"""Train and evaluate through the real CLI on a slice of real MMLU-Pro data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ladder.checkpoint import Checkpoint
from ladder.head import OnnxHead
from tests.support import ladder, shared_data
from training.dataset import read_canonical, split_by_id, write_canonical
from training.importers import import_data

MODELS = {
    "flash": "gemini-1.5-flash-002",
    "llama-70b": "Meta-Llama-3_1-70B-Instruct",
    "pro": "gemini-1.5-pro-002",
}
POOL = """version: 1
routing:
  checkpoint: ckpt
models:
""" + "".join(
    f"""  - name: {name}
    label: {label}
    upstream: {{base_url: "http://127.0.0.1:9/v1", model: {label}}}
    price: {{input_per_1m: {price}, output_per_1m: {price * 4}}}
    context_window: 32768
"""
    for (name, label), price in zip(MODELS.items(), (0.075, 0.88, 1.25), strict=True)
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 600-question slice of MMLU-Pro with a train/test split, a 3-model pool, and a trained checkpoint."""
    root = tmp_path_factory.mktemp("training")
    data = import_data("mmlu-pro", shared_data() / "mmlu_pro")
    data = split_by_id(data.subset(np.arange(0, len(data), 20)).select_models(list(MODELS.values())), 0.25)
    write_canonical(data, root / "slice.csv")
    (root / "pool.yaml").write_text(POOL, encoding="utf-8")
    ladder(
        "train",
        "--data",
        str(root / "slice.csv"),
        "--pool",
        str(root / "pool.yaml"),
        "--out",
        str(root / "ckpt"),
        "--members",
        "3",
        "--pca-dims",
        "32",
        check=True,
    )
    return root


def test_checkpoint_records_what_it_was_trained_on(workdir: Path) -> None:
    checkpoint = Checkpoint.load(workdir / "ckpt")
    manifest = checkpoint.manifest
    assert checkpoint.models == tuple(MODELS.values())
    assert manifest.encoder.name == "multilingual-e5-small" and manifest.encoder.dim == 384
    assert manifest.training.data_digest == read_canonical([workdir / "slice.csv"]).split("train").digest()
    assert manifest.recommended is not None and 0 <= manifest.recommended.tolerance <= 1
    for metrics in manifest.cv_metrics.values():
        assert 0 <= metrics["ece"] < 0.2 and 0 <= metrics["accuracy"] <= 1
    assert set(manifest.expected_output_tokens) == set(MODELS.values())


def test_evaluate_reports_every_baseline_on_held_out_rows(workdir: Path) -> None:
    result = ladder(
        "evaluate",
        "--checkpoint",
        str(workdir / "ckpt"),
        "--data",
        str(workdir / "slice.csv"),
        "--pool",
        str(workdir / "pool.yaml"),
        "--json",
        str(workdir / "report.json"),
        "--plot",
        str(workdir / "curve.png"),
        "--strong",
        "pro",
        "--weak",
        "flash",
        check=True,
    )
    report = json.loads((workdir / "report.json").read_text())
    test_rows = read_canonical([workdir / "slice.csv"]).split("test")
    assert report["questions"] + report["dropped_incomplete"] + report["dropped_seen_in_training"] <= len(
        test_rows.questions
    )
    assert set(report["per_model"]) == set(MODELS)
    for stats in report["per_model"].values():
        assert {"accuracy", "auc", "ece", "cost_per_1k"} <= set(stats)
    assert report["best_single_model"] in MODELS
    assert report["oracle_accuracy"] >= report["best_single_accuracy"]
    assert {"knn", "random"} <= set(report["baselines"])
    assert len(report["router"]) == len(report["baselines"]["knn"]) == len(report["baselines"]["random"])
    assert report["router"][0]["tolerance"] == 0.0
    costs = [p["cost_per_1k"] for p in report["router"]]
    assert costs[0] >= costs[-1]  # climbing down the ladder never costs more
    assert (
        report["recommended"]["tolerance"] == Checkpoint.load(workdir / "ckpt").manifest.recommended.tolerance
    )
    assert {"apgr", "cpt50", "cpt80"} <= set(report["strong_weak"]["router"])
    assert "router at tolerance 0" in result.stdout
    assert (workdir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_is_deterministic_under_a_seed(workdir: Path) -> None:
    ladder(
        "train",
        "--data",
        str(workdir / "slice.csv"),
        "--pool",
        str(workdir / "pool.yaml"),
        "--out",
        str(workdir / "again"),
        "--members",
        "3",
        "--pca-dims",
        "32",
        check=True,
    )
    x = np.random.default_rng(0).normal(size=(16, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    first = OnnxHead(workdir / "ckpt" / "head.onnx").predict(x)
    second = OnnxHead(workdir / "again" / "head.onnx").predict(x)
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_unknown_labels_are_masked_not_wrong(workdir: Path) -> None:
    data = read_canonical([workdir / "slice.csv"])
    labels = data.labels.copy()
    pro = data.models.index(MODELS["pro"])
    labels[::2, pro] = np.nan  # half of the strong model's answers are unknown
    from dataclasses import replace

    write_canonical(replace(data, labels=labels), workdir / "holes.csv")
    ladder(
        "train",
        "--data",
        str(workdir / "holes.csv"),
        "--pool",
        str(workdir / "pool.yaml"),
        "--out",
        str(workdir / "holes"),
        "--members",
        "3",
        "--pca-dims",
        "32",
        check=True,
    )
    metrics = Checkpoint.load(workdir / "holes").manifest.cv_metrics[MODELS["pro"]]
    train = data.split("train")
    known = ~np.isnan(labels[[data.question_ids.index(q) for q in train.question_ids], pro])
    assert metrics["labels"] == known.sum()
    # were unknowns read as wrong, the learned accuracy would fall to about half
    assert metrics["accuracy"] == pytest.approx(np.nanmean(train.labels[:, pro]), abs=0.06)
