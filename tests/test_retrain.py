"""`ladder retrain`: a candidate trained on traffic is promoted (and the gateway rolled) only if it wins.

The Kubernetes API is a real HTTP server on loopback (tests/k8s_fake.py) reached by the real `kubernetes`
client through a kubeconfig; the questions are real MMLU-Pro questions, the labels a production shift.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from ladder.bench.server_thread import ServerThread
from ladder.core.checkpoint import Checkpoint
from ladder.core.decision_record import DecisionRecord, TokenCounts
from ladder.core.pool import load_pool
from ladder.core.traffic_db import DecisionRow, OutcomeRow, TrafficDB
from ladder.training._builder import RoutingDataBuilder
from ladder.training.dataset import write_canonical
from ladder.training.fit import HeadSettings
from ladder.training.promote import DeploymentRef, RolloutError, install, rollout_restart
from ladder.training.train import TrainingSpec, train
from tests.k8s_fake import TOKEN, FakeKubernetes, fake_kubernetes_app, write_kubeconfig
from tests.support import ladder, shared_data
from tests.test_cli import assert_clean_error

ENCODER = "all-minilm-l6-v2"
MODELS = (("small-local", 0.2), ("mid-cloud", 1.0), ("vision-pro", 6.0))  # name, $/1M tokens
SMALL = dict(members=2, pca_dims=16)


def questions(category: str, count: int, skip: int = 0) -> list[tuple[str, str]]:
    found = []
    with (shared_data() / "mmlu_pro" / "questions.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            if item["category"] == category:
                found.append((str(item["question_id"]), item["question"]))
    return found[skip : skip + count]


def truth(model: str, category: str, shifted: bool, qid: str) -> float:
    """Offline, small-local knew law and mid-cloud maths; in production it turns out the other way.

    One label in eight is flipped (by question id), as real labels are never perfectly separable.
    """
    noise = int(qid) % 8 == 0
    if model == "vision-pro":
        return float(not noise)
    good = {"small-local": "law", "mid-cloud": "math"}[model]
    return float((category == good) != shifted != noise)


@dataclass(frozen=True)
class Setup:
    pool: Path
    serving: Path
    db: Path
    kubeconfig: Path
    kube: FakeKubernetes


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("retrain")
    builder = RoutingDataBuilder()
    for category in ("law", "math"):
        for qid, text in questions(category, 40):
            row = builder.question(qid, text, split="train", where=qid)
            for name, _ in MODELS:
                builder.cell(row, name, truth(name, category, False, qid), where=qid)
    base = write_canonical(builder.build(), root / "base.csv")
    serving = root / "checkpoints" / "serving"
    pool = root / "pool.yaml"
    pool.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "routing": {"checkpoint": str(serving), "tolerance": 0.05, "encoder": ENCODER},
                "models": [
                    {
                        "name": name,
                        "upstream": {"base_url": "http://127.0.0.1:9/v1", "model": name},
                        "price": {"input_per_1m": price, "output_per_1m": price},
                        "context_window": 32768,
                    }
                    for name, price in MODELS
                ],
            }
        ),
        encoding="utf-8",
    )
    from ladder.training.dataset import read_canonical

    spec = TrainingSpec(encoder=ENCODER, head=HeadSettings(**SMALL))  # type: ignore[arg-type]
    train(read_canonical(base), [str(base)], serving, load_pool(pool), spec)

    db = TrafficDB(root / "traffic.db")
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    rng = np.random.default_rng(0)
    decisions, outcomes = [], []
    for category in ("law", "math"):
        for i, (qid, text) in enumerate(questions(category, 60, skip=40)):
            answered = ("small-local", "mid-cloud")[i % 2]
            request_id = f"req-{qid}"
            record = DecisionRecord(
                request_id=request_id,
                endpoint="chat",
                chosen_model=answered,
                answered_model=answered,
                p_correct={name: float(rng.uniform()) for name, _ in MODELS},
                cost_usd=1e-4,
                usage=TokenCounts(prompt=100, completion=50),
            )
            decisions.append(DecisionRow(request_id, now, record, text))
            label = truth(answered, category, True, qid)
            outcomes.append(OutcomeRow(request_id, now, answered, label, "feedback:thumbs"))
    db.add_decisions(decisions)
    for outcome in outcomes:
        db.add_outcome(outcome)
    db.close()

    kube = FakeKubernetes()
    kube.add("ladder", "ladder-gateway")
    with ServerThread(fake_kubernetes_app(kube)) as server:
        kubeconfig = write_kubeconfig(root / "kubeconfig", server.url, "ladder")
        yield Setup(pool, serving, root / "traffic.db", kubeconfig, kube)


def retrain(setup: Setup, out: Path, *extra: str) -> tuple[int, dict[str, object], str]:
    result = ladder(
        "retrain", "--feedback", str(setup.db), "--pool", str(setup.pool), "--test-fraction", "0.3",
        "--min-labels", "20", "--members", "2", "--pca-dims", "16", "--deployment", "ladder-gateway",
        "--namespace", "ladder", "--kubeconfig", str(setup.kubeconfig), "--json", str(out), *extra,
    )  # fmt: skip
    report = json.loads(out.read_text()) if out.is_file() else {}
    return result.returncode, report, result.stderr


def leftovers(setup: Setup) -> list[str]:
    return sorted(p.name for p in setup.serving.parent.iterdir() if ".candidate-" in p.name)


def test_candidate_that_loses_changes_nothing(setup: Setup, tmp_path: Path) -> None:
    before = (setup.serving / "manifest.json").read_bytes()
    code, report, stderr = retrain(setup, tmp_path / "report.json", "--margin", "1.0")
    assert code == 0, stderr
    assert report["promote"] is False and "kept the serving checkpoint" in str(report["reason"])
    assert (setup.serving / "manifest.json").read_bytes() == before
    assert not leftovers(setup) and not (setup.serving.parent / "serving.previous").exists()
    assert setup.kube.requests == []  # not even a GET


def test_candidate_that_wins_is_installed_and_the_gateway_rolled(setup: Setup, tmp_path: Path) -> None:
    old = Checkpoint.load(setup.serving).manifest
    code, report, stderr = retrain(setup, tmp_path / "report.json")
    assert code == 0, stderr
    serving, candidate = report["serving"], report["candidate"]
    assert isinstance(serving, dict) and isinstance(candidate, dict)
    # the shift is real: the serving checkpoint is confidently wrong on held-out traffic
    assert report["heldout_labels"] >= 20 and candidate["brier"] < serving["brier"] - 0.1, report
    assert report["promote"] is True
    new = Checkpoint.load(setup.serving).manifest  # checksum verified
    assert new.training.data_digest != old.training.data_digest
    assert any("traffic-" in f for f in new.training.data_files)
    previous = Checkpoint.load(setup.serving.parent / "serving.previous").manifest
    assert previous.training.data_digest == old.training.data_digest
    assert not leftovers(setup)
    (get, patch) = setup.kube.requests
    assert (
        get["method"] == "GET" and get["path"] == "/apis/apps/v1/namespaces/ladder/deployments/ladder-gateway"
    )
    assert patch["path"] == get["path"] and patch["authorization"] == f"Bearer {TOKEN}"
    assert patch["content_type"] == "application/strategic-merge-patch+json"
    annotations = patch["body"]["spec"]["template"]["metadata"]["annotations"]
    assert list(annotations) == ["kubectl.kubernetes.io/restartedAt"]
    assert datetime.fromisoformat(annotations["kubectl.kubernetes.io/restartedAt"]).tzinfo is not None
    deployment = setup.kube.deployments[("ladder", "ladder-gateway")]
    assert deployment["metadata"]["generation"] == 2
    assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"] == "abc"
    rollout = report["rollout"]
    assert isinstance(rollout, dict) and rollout["generation_after"] == 2


def test_rollout_errors_are_clear(setup: Setup, tmp_path: Path) -> None:
    missing = DeploymentRef("no-such-gateway", "ladder", setup.kubeconfig)
    with pytest.raises(RolloutError, match="404"):
        rollout_restart(missing)
    setup.kube.refuse = True
    try:
        with pytest.raises(RolloutError, match="403"):
            rollout_restart(DeploymentRef("ladder-gateway", "ladder", setup.kubeconfig))
    finally:
        setup.kube.refuse = False


def test_install_keeps_the_old_checkpoint_on_a_bad_candidate(setup: Setup, tmp_path: Path) -> None:
    bad = setup.serving.parent / ".serving.candidate-bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{}")
    before = (setup.serving / "manifest.json").read_bytes()
    with pytest.raises(Exception, match="not a Ladder checkpoint manifest"):
        install(bad, setup.serving)
    assert (setup.serving / "manifest.json").read_bytes() == before
    bad.joinpath("manifest.json").unlink()
    bad.rmdir()


def test_retrain_bad_input(setup: Setup, tmp_path: Path) -> None:
    assert_clean_error(ladder("retrain", "--pool", str(setup.pool)), "--feedback")
    assert_clean_error(
        ladder("retrain", "--feedback", str(tmp_path / "none.db"), "--pool", str(setup.pool)),
        "no such traffic database",
    )
    assert_clean_error(
        ladder("retrain", "--feedback", str(setup.db), "--pool", str(setup.pool), "--objective", "vibes"),
        "--objective must be one of",
    )
