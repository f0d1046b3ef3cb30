"""`ladder onboard`: a model joins a trained router from a small sample, on a slice of real MMLU-Pro data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ladder.core.checkpoint import Checkpoint
from ladder.core.head import OnnxHead
from ladder.core.pool import load_pool
from ladder.training.dataset import read_canonical, split_by_id, write_canonical
from ladder.training.fit import HeadSettings
from ladder.training.importers import import_data
from ladder.training.probes import disagreement
from ladder.training.train import TrainingSpec, train
from tests.support import ladder, shared_data
from tests.test_training import MODELS, POOL

NEW = MODELS["llama-70b"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slice test_training uses; a base router for flash and pro; llama's training labels apart."""
    root = tmp_path_factory.mktemp("onboard")
    data = import_data("mmlu-pro", shared_data() / "mmlu_pro")
    data = split_by_id(data.subset(np.arange(0, len(data), 20)).select_models(list(MODELS.values())), 0.25)
    data = data.subset(np.nonzero(~np.isnan(data.labels).any(axis=1))[0])
    write_canonical(data, root / "slice.csv")
    (root / "pool3.yaml").write_text(POOL.replace("checkpoint: ckpt", "checkpoint: onboarded"), "utf-8")
    pool3 = load_pool(root / "pool3.yaml")
    pool2 = pool3.model_copy(update={"models": tuple(m for m in pool3.models if m.name != "llama-70b")})
    train(
        data,
        [str(root / "slice.csv")],
        root / "base",
        pool2,
        TrainingSpec(head=HeadSettings(members=3, pca_dims=32)),
    )
    write_canonical(data.split("train").select_models([NEW]), root / "llama.csv")
    result = ladder(
        "onboard",
        "--checkpoint",
        str(root / "base"),
        "--data",
        str(root / "llama.csv"),
        "--out",
        str(root / "onboarded"),
        "--json",
        str(root / "summary.json"),
    )
    assert result.returncode == 0, result.stderr
    return root


def test_the_new_model_joins_and_the_rest_of_the_head_stays_fixed(workdir: Path) -> None:
    base, onboarded = Checkpoint.load(workdir / "base"), Checkpoint.load(workdir / "onboarded")
    assert onboarded.models == (*base.models, NEW)
    x = np.random.default_rng(1).normal(size=(32, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    before, after = OnnxHead(base.head_path).predict(x), OnnxHead(onboarded.head_path).predict(x)
    assert after.shape == (32, 3)
    np.testing.assert_allclose(after[:, :2], before, atol=1e-6)
    assert after[:, 2].min() > 0 and after[:, 2].max() < 1 and after[:, 2].std() > 1e-3
    manifest = onboarded.manifest
    labels = len(read_canonical([workdir / "llama.csv"]).questions)
    metrics = manifest.cv_metrics[NEW]
    assert metrics["labels"] == labels and 0.45 < metrics["auc"] < 0.95
    record = manifest.training.settings["onboarded"][0]
    assert record["model"] == NEW and record["labels"] == labels
    # the sample questions are the base's own training questions: scored out of fold, not in-sample
    assert record["questions_in_base_training_scored_out_of_fold"] == labels
    assert np.asarray(manifest.reference_p_correct).shape[1] == 3
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["model"] == NEW and summary["cross_validated"]["auc"] == metrics["auc"]


def test_the_onboarded_router_is_judged_on_held_out_rows(workdir: Path) -> None:
    ladder(
        "evaluate",
        "--checkpoint",
        str(workdir / "onboarded"),
        "--data",
        str(workdir / "slice.csv"),
        "--pool",
        str(workdir / "pool3.yaml"),
        "--json",
        str(workdir / "report.json"),
        check=True,
    )
    report = json.loads((workdir / "report.json").read_text())
    held_out_auc = report["per_model"]["llama-70b"]["auc"]
    cv_auc = Checkpoint.load(workdir / "onboarded").manifest.cv_metrics[NEW]["auc"]
    assert held_out_auc > 0.5
    # the cross-validated figure is not an in-sample one: an in-sample AUC would overstate the held-out one
    assert cv_auc - held_out_auc < 0.12
    assert report["per_model"]["llama-70b"]["ece"] < 0.15  # its P(correct) is calibrated on new questions


def test_suggested_probes_are_diverse_and_where_the_pool_disagrees(workdir: Path) -> None:
    out = workdir / "probes.jsonl"
    result = ladder(
        "onboard",
        "--suggest",
        "30",
        "--checkpoint",
        str(workdir / "base"),
        "--data",
        str(workdir / "slice.csv"),
        "--questions",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    probes = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(probes) == 30 and all({"id", "question"} <= set(p) for p in probes)
    train_rows = read_canonical([workdir / "slice.csv"]).split("train")
    row = {q: i for i, q in enumerate(train_rows.question_ids)}
    picked = [row[p["id"]] for p in probes]  # every probe is a training question
    assert len(set(picked)) == 30
    base_models = [MODELS["flash"], MODELS["pro"]]
    spread = disagreement(train_rows.labels[:, [train_rows.models.index(m) for m in base_models]])
    assert spread[picked].mean() > spread.mean() + 0.05
    assert len({train_rows.tasks[i] for i in picked}) >= 8  # MMLU-Pro's 14 subjects, widely covered


def test_bad_onboarding_input_is_refused_clearly(workdir: Path) -> None:
    def refused(data: Path, *fragments: str, out: str = "elsewhere") -> None:
        result = ladder(
            "onboard", "--checkpoint", str(workdir / "base"), "--data", str(data), "--out", str(workdir / out)
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        for fragment in fragments:
            assert fragment in result.stderr

    data = read_canonical([workdir / "llama.csv"])
    write_canonical(data.subset(np.arange(12)), workdir / "tiny.csv")
    refused(workdir / "tiny.csv", "has 12 labels", "at least 20")
    known = read_canonical([workdir / "slice.csv"]).select_models([MODELS["flash"]])
    write_canonical(known, workdir / "known.csv")
    refused(workdir / "known.csv", "already in the checkpoint")
    refused(workdir / "llama.csv", "is the base checkpoint", out="base")
    assert not (workdir / "elsewhere").exists()


def test_evaluate_names_what_it_leaves_out_when_training_data_lacks_the_onboarded_model(workdir: Path) -> None:
    """The base's training data had no column for the onboarded model: evaluate says so (it used to crash)."""
    others = [m for m in MODELS.values() if m != NEW]
    write_canonical(read_canonical([workdir / "slice.csv"]).select_models(others), workdir / "without-new.csv")
    result = ladder(
        "evaluate", "--checkpoint", str(workdir / "onboarded"), "--data", str(workdir / "slice.csv"),
        "--pool", str(workdir / "pool3.yaml"), "--train-data", str(workdir / "without-new.csv"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    sections = "baselines.knn, recommended_by_objective, baselines.per_task, cascades"
    assert f"left out: {sections}: the training data has no labels for ['{NEW}']" in said
    assert "llama-70b" in said  # the per-model table
