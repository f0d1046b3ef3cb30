"""Train and evaluate through the real CLI on a slice of real MMLU-Pro data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ladder.core.cascade import CascadeConfig
from ladder.core.checkpoint import Checkpoint
from ladder.core.errors import CheckpointError, DataError
from ladder.core.head import OnnxHead
from ladder.core.pool import load_pool
from ladder.training.costs import EQUAL_COSTS
from ladder.training.dataset import RoutingData, read_canonical, split_by_id, write_canonical
from ladder.training.fit import HeadSettings
from ladder.training.importers import import_data
from ladder.training.train import TrainingSpec, train
from tests.support import ladder, shared_data

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


def train_as_shipped(root: Path, data: Path, out: Path) -> None:
    """`ladder train` on ``data`` into ``out`` as the module's checkpoint is trained: priced by the pool in
    ``root``, 3 members, 32 principal components."""
    options = ["--pool", str(root / "pool.yaml"), "--members", "3", "--pca-dims", "32"]
    ladder("train", "--data", str(data), "--out", str(out), *options, check=True)


def evaluate(workdir: Path, *options: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """`ladder evaluate` of the module's checkpoint on its data slice (the held-out rows), with ``options``."""
    trained = ["--checkpoint", str(workdir / "ckpt"), "--data", str(workdir / "slice.csv")]
    return ladder("evaluate", *trained, *options, check=check)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 600-question slice of MMLU-Pro with a train/test split, a 3-model pool, and a trained checkpoint."""
    root = tmp_path_factory.mktemp("training")
    data = import_data("mmlu-pro", shared_data() / "mmlu_pro")
    data = split_by_id(data.subset(np.arange(0, len(data), 20)).select_models(list(MODELS.values())), 0.25)
    write_canonical(data, root / "slice.csv")
    (root / "pool.yaml").write_text(POOL, encoding="utf-8")
    train_as_shipped(root, root / "slice.csv", root / "ckpt")
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
    result = evaluate(
        workdir,
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
    train_as_shipped(workdir, workdir / "slice.csv", workdir / "again")
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
    train_as_shipped(workdir, workdir / "holes.csv", workdir / "holes")
    metrics = Checkpoint.load(workdir / "holes").manifest.cv_metrics[MODELS["pro"]]
    train = data.split("train")
    known = ~np.isnan(labels[[data.question_ids.index(q) for q in train.question_ids], pro])
    assert metrics["labels"] == known.sum()
    # were unknowns read as wrong, the learned accuracy would fall to about half
    assert metrics["accuracy"] == pytest.approx(np.nanmean(train.labels[:, pro]), abs=0.06)


def test_training_without_costs_or_pool_routes_on_accuracy_alone(workdir: Path) -> None:
    """MMLU-Pro has no cost_usd: without a pool, train on equal costs and say so (it used to fail late)."""
    result = ladder(
        "train",
        "--data",
        str(workdir / "slice.csv"),
        "--out",
        str(workdir / "no-prices"),
        "--members",
        "2",
        "--pca-dims",
        "16",
    )
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "no cost_usd" in result.stderr
    assert "(no costs: equal prices)" in result.stderr and "per 1K requests" not in result.stderr
    assert f"ladder serve --checkpoint {workdir / 'no-prices'}" in result.stderr.replace("\n", " ")
    manifest = Checkpoint.load(workdir / "no-prices").manifest
    assert manifest.training.settings["costs"] == EQUAL_COSTS
    assert manifest.data_cost_per_request == {}
    # with equal costs every tolerance routes to the most likely model: the recommended point is 0
    assert manifest.recommended is not None and manifest.recommended.tolerance == 0.0


def test_training_checks_what_it_needs_before_embedding(tmp_path: Path) -> None:
    """A missing cost for one model, or an --out that is a file, fails before any embedding starts."""
    n = 12
    data = RoutingData.from_labels(
        [f"q{i}" for i in range(n)],
        [f"Question number {i}?" for i in range(n)],
        ["cheap", "dear"],
        np.tile([[1.0, 0.0], [0.0, 1.0]], (n // 2, 1)),
        costs=np.tile([[0.001, np.nan]], (n, 1)),
    )
    stages: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        stages.append(stage)

    spec = TrainingSpec(head=HeadSettings(members=2))
    with pytest.raises(DataError, match=r"no cost_usd for model 'dear'"):
        train(data, ["synthetic"], tmp_path / "ckpt", None, spec, progress)
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    priced = RoutingData.from_labels(
        data.question_ids, data.questions, data.models, data.labels, costs=np.full((n, 2), 0.001)
    )
    with pytest.raises(CheckpointError, match=r"a-file: exists and is not a folder"):
        train(priced, ["synthetic"], tmp_path / "a-file", None, spec, progress)
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "manifest.json").write_text("{}", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"kept: already exists and is not empty; .* --force to replace it"):
        train(priced, ["synthetic"], tmp_path / "kept", None, spec, progress)
    few = priced.subset(np.arange(3))
    with pytest.raises(DataError, match=r"only 3 questions have labels; training needs at least 4 \(twice --members"):
        train(few, ["synthetic"], tmp_path / "ckpt", None, spec, progress)
    assert stages == [] and not (tmp_path / "ckpt").exists()
    assert (tmp_path / "kept" / "manifest.json").read_text(encoding="utf-8") == "{}"


def test_evaluate_writes_the_cascade_it_serves_as_costed_into_the_pool_file(workdir: Path) -> None:
    pool = workdir / "pool-cascade.yaml"
    pool.write_text(
        POOL.replace("routing:\n", "routing:  # written by ladder evaluate below\n")
        + "# the end of the pool\n",
        encoding="utf-8",
    )
    report_path = workdir / "served.json"
    result = evaluate(workdir, "--pool", str(pool), "--json", str(report_path), "--write-cascade")
    assert result.returncode == 0, result.stderr
    served = json.loads(report_path.read_text())["cascades"]["cascade_served"]["plan"]
    assert f"wrote routing.cascade into {pool}" in result.stderr and "+  cascade:" in result.stderr
    written = load_pool(pool).routing.cascade
    assert written == CascadeConfig(**served["gateway"]) and written.unsure_gap is not None
    text = pool.read_text(encoding="utf-8")
    assert "# written by ladder evaluate below" in text and text.endswith("# the end of the pool\n")

    again = evaluate(workdir, "--pool", str(pool), "--json", str(report_path), "--write-cascade", "--force")
    assert again.returncode == 0 and "already has this routing.cascade" in again.stderr
    assert pool.read_text(encoding="utf-8") == text


def test_write_cascade_needs_a_pool_file(workdir: Path) -> None:
    result = evaluate(workdir, "--write-cascade")
    assert result.returncode == 2 and "--write-cascade needs --pool" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_keeps_the_out_of_fold_scores_evaluate_tunes_on(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ladder train` stores its out-of-fold P(correct) per training question id; they equal a refit, and
    `evaluate` reads them instead of refitting the ensemble."""
    from ladder.training import oof as oof_module
    from ladder.training.embed import embed_texts
    from ladder.training.evaluate import evaluation_inputs

    checkpoint = Checkpoint.load(workdir / "ckpt")
    data = read_canonical([workdir / "slice.csv"])
    train_rows = data.split("train")
    labels = train_rows.labels[:, [train_rows.models.index(m) for m in checkpoint.models]]
    keep = ~np.isnan(labels).all(axis=1)
    ids = [train_rows.question_ids[i] for i in np.nonzero(keep)[0]]
    stored = oof_module.stored_oof_p(checkpoint, ids)
    assert stored is not None and stored.shape == (len(ids), len(MODELS))
    assert oof_module.stored_oof_p(checkpoint, [*ids, "not-a-training-question"]) is None
    enc = checkpoint.manifest.encoder
    x = embed_texts([train_rows.questions[i] for i in np.nonzero(keep)[0]], enc.name, enc.variant, 512)
    refit = oof_module.out_of_fold_p(checkpoint, x, labels[keep])  # no ids: refitted fold by fold
    np.testing.assert_allclose(stored, refit, atol=1e-5)

    def no_refit(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluate refitted the ensemble")

    monkeypatch.setattr(oof_module, "fit_head", no_refit)
    inputs = evaluation_inputs(
        checkpoint, data.split("test"), load_pool(workdir / "pool.yaml"), train_rows, tune_on_training=True
    )
    assert inputs.training is not None and len(inputs.training.oof_p) > 0
