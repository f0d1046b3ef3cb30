"""The loop on a loopback pool: collect → judge → train → evaluate, and a collect killed with SIGKILL."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from collect_support import world
from collect_support.harness import Loopback

from tests.support import REPO, ladder

pytest_plugins = ["collect_support.fixtures"]


def labels_of(path: Path) -> dict[tuple[str, str], str]:
    with path.open(encoding="utf-8") as handle:
        return {(r["question_id"], r["model"]): r["correct"] for r in csv.DictReader(handle)}


def rows_in(store: Path) -> set[tuple[str, str]]:
    """The (question, model) rows a store holds, read as another process would; none before it has tables."""
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)) as conn:
        try:
            return set(conn.execute("SELECT question_id, model FROM ladder_answers").fetchall())
        except sqlite3.OperationalError:
            return set()


def test_collect_judge_train_evaluate(tmp_path: Path, fake: Loopback) -> None:
    questions = world.write_questions(tmp_path / "questions.jsonl", world.questions(24))
    store, labels, ckpt = tmp_path / "answers.db", tmp_path / "labels.csv", tmp_path / "ckpt"
    pool = str(fake.pool_file)
    ladder(
        "collect",
        "--pool",
        pool,
        "--questions",
        str(questions),
        "--store",
        str(store),
        "--models",
        "small,large",
        check=True,
    )
    ladder(
        "judge",
        "--store",
        str(store),
        "--judge",
        "reference",
        "--out",
        str(labels),
        "--test-fraction",
        "0.3",
        check=True,
    )
    rows = labels_of(labels)
    assert len(rows) == 96 and all(float(v) == world.truth(m, q) for (q, m), v in rows.items())
    data = ["--data", str(labels)]
    trained = ladder(
        "train",
        *data,
        "--out",
        str(ckpt),
        "--encoder",
        "all-minilm-l6-v2",
        "--members",
        "2",
        "--pca-dims",
        "8",
    )
    assert trained.returncode == 0, trained.stderr
    report_path = tmp_path / "report.json"
    evaluated = ladder("evaluate", "--checkpoint", str(ckpt), *data, "--json", str(report_path))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(report_path.read_text(encoding="utf-8"))
    with labels.open(encoding="utf-8") as handle:
        test_rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    held_out = {r["question_id"] for r in test_rows}
    assert report["questions"] == len(held_out) > 5
    # per-model accuracy on held-out rows is what the fake pool really got right
    for model in world.ANSWERERS:
        truth = [world.truth(model, q) for q in held_out]
        assert report["per_model"][model]["accuracy"] == pytest.approx(sum(truth) / len(truth))
    # and the router learnt when the cheap model fails (on geography): it ranks its answers well
    assert report["per_model"]["small"]["auc"] > 0.8


def test_sigkill_mid_run_then_resume_asks_only_what_is_missing(tmp_path: Path, fake: Loopback) -> None:
    questions = world.write_questions(tmp_path / "questions.jsonl", world.questions(20))
    pairs = {(q["id"], m) for q in world.questions(20) for m in world.ANSWERERS}
    store = tmp_path / "answers.db"
    command = [
        sys.executable, "-m", "ladder.cli", "collect", "--pool", str(fake.pool_file), "--questions", str(questions),
        "--store", str(store), "--models", "small,large", "--concurrency", "2",
    ]  # fmt: skip
    fake.pool.delay_s = 0.05
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (store.exists() and len(rows_in(store)) >= 20):
        assert child.poll() is None and time.monotonic() < deadline, "collect ended before it could be killed"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    before = rows_in(store)
    calls_before = fake.pool.total()
    assert 20 <= len(before) < len(pairs) and calls_before - len(before) <= 2  # at most 2 were in flight
    fake.pool.delay_s = 0.0
    ladder(*command[3:], check=True)
    after = rows_in(store)
    assert after == pairs
    by_pair = {
        (q["id"], m): fake.pool.calls[(m, q["question"])]
        for q in world.questions(20)
        for m in world.ANSWERERS
    }
    assert all(by_pair[p] == 1 for p in before)  # nothing answered before the kill was asked again
    repeated = [p for p, n in by_pair.items() if n > 1]
    assert all(n >= 1 for n in by_pair.values()) and len(repeated) == calls_before - len(before) <= 2
    with closing(sqlite3.connect(store)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # the same labels as a run that was never interrupted
    clean = tmp_path / "clean.db"
    ladder("collect", *command[4:8], "--store", str(clean), "--models", "small,large", check=True)
    for name, path in (("killed", store), ("clean", clean)):
        ladder(
            "judge",
            "--store",
            str(path),
            "--judge",
            "reference",
            "--out",
            str(tmp_path / f"{name}.csv"),
            check=True,
        )
    assert labels_of(tmp_path / "killed.csv") == labels_of(tmp_path / "clean.csv")
    assert (tmp_path / "killed.csv").read_bytes() == (tmp_path / "clean.csv").read_bytes()


LLAMA_PYTHON = REPO / ".venv-llama" / "bin" / "python"
GGUFS = [
    REPO / ".ladder-models" / name for name in ("SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf")
]


@pytest.mark.skipif(
    not LLAMA_PYTHON.is_file() or not all(p.is_file() for p in GGUFS),
    reason="llama.cpp or the local models are missing: run scripts/install_llama_cpp.sh",
)
def test_two_real_local_models_answer_and_are_judged(tmp_path: Path) -> None:
    """The suite's share of scripts/local_loop.py: one question per task, 6 tasks, SmolLM2 and Gemma 3."""
    report_dir = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "local_loop.py"), "--per-task", "1", "--skip-train",
         "--max-tokens", "16", "--work", str(tmp_path / "work"), "--report", str(report_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["questions"] == 6 and summary["dry_run_estimate"]["calls"] == 12
    for model in ("smollm2-135m", "gemma3-270m"):  # every answer is judged, or reported as a failure
        judged = summary["judge"]["models"][model]
        assert judged["labelled"] + judged["failed_answers_not_judged"] == 6
        assert judged["accuracy"] is None or 0.0 <= judged["accuracy"] <= 1.0
    with (tmp_path / "work" / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["model"] for r in rows} <= {"smollm2-135m", "gemma3-270m"}
    assert all(float(r["cost_usd"]) > 0 and r["correct"] in ("0", "1") for r in rows)
