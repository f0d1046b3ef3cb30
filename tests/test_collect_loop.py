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
from contextlib import ExitStack, closing
from pathlib import Path

import pytest
from collect_support import world
from collect_support.harness import Loopback

from ladder.bench.llama_server import MODELS_DIR, llama_server
from ladder.bench.llama_server import available as llama_server_available
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


LOCAL_MODELS = {  # name -> (GGUF file, chat format llama.cpp must be told, nominal $ per 1M tokens in/out)
    "smollm2-135m": ("SmolLM2-135M-Instruct.Q4_1.gguf", None, 0.01, 0.02),
    "gemma3-270m": ("gemma-3-270m-q4_k_m.gguf", "gemma", 0.02, 0.04),
}
LOCAL_QUESTIONS = [  # one per kind the judge reads: option letters, numbers, short text
    {"id": "mc-1", "question": "Which planet is the largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury\n"
     "Answer with the letter of the correct option.", "reference": "B", "task": "mmlu"},
    {"id": "mc-2", "question": "Water boils at sea level at:\nA. 50 C\nB. 75 C\nC. 100 C\nD. 150 C\n"
     "Answer with the letter of the correct option.", "reference": "C", "task": "arc_challenge"},
    {"id": "mc-3", "question": "Where do you keep milk cold?\nA. oven\nB. fridge\nC. drawer\nD. car\n"
     "Answer with the letter of the correct option.", "reference": "B", "task": "commonsense_qa"},
    {"id": "num-1", "question": "What is 7 times 6? Answer with the number only.", "reference": "42",
     "task": "gsm8k"},
    {"id": "short-1", "question": "What is the capital of France? Answer in a few words.", "reference": "Paris",
     "task": "trivia_qa"},
    {"id": "short-2", "question": "Who wrote Hamlet? Answer in a few words.", "reference": "William Shakespeare",
     "task": "natural_qa"},
]  # fmt: skip


@pytest.mark.skipif(
    not llama_server_available(*(MODELS_DIR / gguf for gguf, *_ in LOCAL_MODELS.values())),
    reason="llama.cpp or the local models are missing: run scripts/install_llama_cpp.sh",
)
def test_two_real_local_models_answer_and_are_judged(tmp_path: Path) -> None:
    """The loop's collect and judge on two real local models behind llama.cpp: 6 questions, 12 calls."""
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in LOCAL_QUESTIONS), encoding="utf-8")
    with ExitStack() as stack:
        pool = ["version: 1", "models:"]
        for name, (gguf, chat_format, price_in, price_out) in LOCAL_MODELS.items():
            url = stack.enter_context(llama_server(MODELS_DIR / gguf, name, tmp_path / f"{name}.log", 1, chat_format))
            pool += [
                f"  - name: {name}",
                f"    upstream: {{base_url: {url}, model: {name}}}",
                f"    price: {{input_per_1m: {price_in}, output_per_1m: {price_out}}}",
                "    context_window: 2048",
                "    locality: on-prem",
            ]
        (tmp_path / "pool.yaml").write_text("\n".join(pool) + "\n", encoding="utf-8")
        common = ["--pool", str(tmp_path / "pool.yaml"), "--questions", str(questions),
                  "--store", str(tmp_path / "answers.db"), "--max-tokens", "16", "--concurrency", "1",
                  "--timeout", "120"]  # fmt: skip
        estimate = json.loads(ladder("collect", *common, "--dry-run", check=True).stdout)
        ladder("collect", *common, "--json", str(tmp_path / "collect.json"), check=True)
    assert estimate["total"]["calls"] == 12
    ladder("judge", "--store", str(tmp_path / "answers.db"), "--judge", "reference", "--out",
           str(tmp_path / "labels.csv"), "--test-fraction", "0.3", "--json", str(tmp_path / "judge.json"),
           check=True)  # fmt: skip
    judged = json.loads((tmp_path / "judge.json").read_text(encoding="utf-8"))
    for model in LOCAL_MODELS:  # every answer is judged, or reported as a failure
        counts = judged["models"][model]
        assert counts["labelled"] + counts["failed_answers_not_judged"] == len(LOCAL_QUESTIONS)
    with (tmp_path / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["model"] for r in rows} <= set(LOCAL_MODELS)
    assert all(float(r["cost_usd"]) > 0 and r["correct"] in ("0", "1") for r in rows)
    # the grader agrees with a reading of the stored answers: a label of 1 means the reference is in the answer
    answers = dict(((q, m), a) for q, m, a in sqlite3.connect(tmp_path / "answers.db").execute(
        "SELECT question_id, model, text FROM ladder_answers"))  # fmt: skip
    reference = {q["id"]: str(q["reference"]).lower() for q in LOCAL_QUESTIONS}
    for row in rows:
        if row["correct"] == "1" and not row["question_id"].startswith("mc-"):
            assert reference[row["question_id"]].split()[-1] in answers[(row["question_id"], row["model"])].lower()
