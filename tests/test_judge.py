"""`ladder judge`: reference checks, code run in a sandbox, majority vote, and an LLM judge on loopback."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import pytest
from collect_support import world
from collect_support.harness import FAST, Loopback, run_collect

from ladder.core.answers import choice_letter, final_number, vote_key
from ladder.core.errors import ConfigError
from ladder.core.pool import load_pool
from ladder.training.collect import AnswerStore, CallSettings, Question, read_questions
from ladder.training.judge import ReferenceJudge, judge_store, llm_judge, vote
from ladder.training.judge.llm import grade_prompt
from ladder.training.judge.sandbox import Limits, run_tests
from tests.support import ladder

pytest_plugins = ["collect_support.fixtures"]
JUDGE_SETTINGS = CallSettings(max_tokens=64, timeout_s=2.0, retries=1, backoff_s=0.01)


def q(reference: str | None = None, tests: str | None = None) -> Question:
    return Question(
        "x", "question?", ({"role": "user", "content": "question?"},), reference=reference, tests=tests
    )


# -- reading answers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is (C).", "C"),
        ("Answer: B", "B"),
        ("The answer is a bit unclear.", None),
        ("\\boxed{D}", "D"),
        ("A. Paris is the capital.", "A"),
        ("I think (B) fits best, since (B) says so.", "B"),
        ("It could be (A) or (B).", None),
        ("Paris.", None),
    ],
)
def test_choice_letters(text: str, letter: str | None) -> None:
    assert choice_letter(text) == letter


def test_numbers_and_vote_keys() -> None:
    assert final_number("3 apples and 4 pears make \\boxed{7} fruits, not 8") == 7
    assert final_number("In total she paid $1,596.00.") == 1596
    assert final_number("no number") is None
    assert vote_key("The answer is (B)") == vote_key("(B)") == "choice:B"
    assert vote_key("It is 12.") == vote_key("12") and vote_key("The Eiffel Tower!") == vote_key(
        "eiffel tower"
    )


def test_reference_judge() -> None:
    judge = ReferenceJudge()
    assert judge.judge(q("C"), "The answer is (C).")[0] == 1.0
    assert judge.judge(q("(c)"), "The answer is (B).") == (0.0, "choice: B vs C")
    assert judge.judge(q("B"), "I cannot tell.")[0] == 0.0
    assert judge.judge(q("1596"), "So the total is 1,596.")[0] == 1.0
    assert judge.judge(q("0.333333"), "about 0.333")[0] == 0.0  # outside the tolerance
    assert ReferenceJudge(rel_tol=1e-2).judge(q("0.333333"), "0.333")[0] == 1.0
    assert judge.judge(q("Bayreuth"), "bayreuth.")[0] == 1.0
    assert judge.judge(q("seats"), "Recaro makes car seats.") == (1.0, "text: reference found in the answer")
    assert judge.judge(q("seat"), "Recaro makes car seats.")[0] == 0.0  # whole words only
    assert judge.judge(q(None), "anything") == (None, "no reference or tests")


# -- code in the sandbox -------------------------------------------------------------------------------

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"


def test_code_answers_run_against_their_tests() -> None:
    judge = ReferenceJudge(limits=Limits(time_s=5))
    assert judge.judge(q(tests=ADD_TESTS), f"Here you go:\n```python\n{ADD}```\nDone.")[0] == 1.0
    wrong = judge.judge(q(tests=ADD_TESTS), "```python\ndef add(a, b):\n    return a - b\n```")
    assert wrong[0] == 0.0 and "AssertionError" in wrong[1]


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("while True:\n    pass", "timed out"),
        ("x = bytearray(2 * 1024 ** 3)", "MemoryError"),
        ("import socket\nsocket.create_connection(('127.0.0.1', 9))", "PermissionError"),
        ("import os\nassert os.system('echo hi > /usr/hi') == 0", "AssertionError"),  # a read-only system
        ("import subprocess\nassert subprocess.run(['touch', '/box/x']).returncode == 0", "AssertionError"),
    ],
)
def test_sandbox_limits(code: str, why: str) -> None:
    result = run_tests(code, "", Limits(time_s=2, memory_mb=256))
    assert not result.passed and why in result.detail


# -- vote ----------------------------------------------------------------------------------------------


def test_vote_needs_a_strict_majority() -> None:
    labels = vote({"a": "The answer is (B)", "b": "B", "c": "(C)"})
    assert {m: v[0] for m, v in labels.items()} == {"a": 1.0, "b": 1.0, "c": 0.0}
    tie = vote({"a": "(A)", "b": "(B)"})
    assert all(v[0] is None for v in tie.values())  # a tie: unknown, never "the first model wins"
    split = vote({"a": "1", "b": "2", "c": "3", "d": "1"})
    assert all(v[0] is None for v in split.values())  # 2 of 4 is no majority
    assert vote({"a": "(A)"})["a"][0] is None


# -- on collected answers ------------------------------------------------------------------------------


@pytest.fixture
def collected(tmp_path: Path, fake: Loopback) -> tuple[Path, AnswerStore]:
    path = world.write_questions(tmp_path / "questions.jsonl", world.questions(4))
    # empty on every attempt: a call that times out on a busy machine and is retried still ends empty
    fake.pool.fail("large", "What is 10 plus 16?", *["empty"] * (FAST.retries + 1))
    _, store = run_collect(tmp_path / "s.db", fake.pool_file, read_questions(path))
    return path, store


def read_rows(path: Path) -> dict[tuple[str, str], float]:
    with path.open(encoding="utf-8") as handle:
        return {(r["question_id"], r["model"]): float(r["correct"]) for r in csv.DictReader(handle)}


def test_reference_labels_are_written_and_kept(
    tmp_path: Path, collected: tuple[Path, AnswerStore], fake: Loopback
) -> None:
    _, store = collected
    calls = fake.pool.total()
    report = judge_store(store, "reference", tmp_path / "labels.csv")
    rows = read_rows(tmp_path / "labels.csv")
    expected = {
        (f"{kind}-{i}", m): world.truth(m, f"{kind}-{i}")
        for kind in ("add", "geo")
        for i in range(4)
        for m in world.ANSWERERS
    }
    del expected[("add-1", "large")]  # the empty answer: a failure, never judged
    assert rows == expected
    assert report.failed_answers["large"] == 1 and report.labelled["large"] == 7
    assert fake.pool.total() == calls  # judging never calls the pool
    assert store.labels("reference")[("geo-1", "small")][0] == 0.0
    with (tmp_path / "labels.csv").open(encoding="utf-8") as handle:
        written = {(r["question_id"], r["model"]): r for r in csv.DictReader(handle)}
    row = written[("geo-1", "large")]
    assert (
        row["answer"] == "The capital is option (B). The answer is (B)."
        and float(row["answer_logprob"]) == -0.25
    )
    assert row["task"] == "geography" and float(row["cost_usd"]) > 0 and float(row["output_tokens"]) == 9


def test_vote_labels_leave_ties_unknown(tmp_path: Path, collected: tuple[Path, AnswerStore]) -> None:
    _, store = collected
    judge_store(store, "vote", tmp_path / "vote.csv")
    rows = read_rows(tmp_path / "vote.csv")
    # two models: they agree (both 1) or tie (no row); never a 0 for one of them
    assert rows and set(rows.values()) == {1.0}
    assert ("geo-1", "small") not in rows and ("geo-1", "large") not in rows
    assert store.labels("vote")[("geo-1", "small")][0] is None


def test_llm_judge_grades_and_retries_malformed_verdicts(
    tmp_path: Path, collected: tuple[Path, AnswerStore], fake: Loopback
) -> None:
    _, store = collected
    config = load_pool(fake.pool_file)
    judge, notes = llm_judge(
        store, config, "judge", allow_self_judge=False, graded=False, pairwise=False, settings=JUDGE_SETTINGS
    )
    assert notes == []
    prompt_of = {question.id: question for question in store.questions()}
    # the first verdict on one answer is prose: asked again, then valid; another is never valid: unknown
    answers = {(a.question_id, a.model): a.text or "" for a in store.answers()}
    once = grade_prompt(prompt_of["geo-2"], answers[("geo-2", "small")], graded=False)
    never = grade_prompt(prompt_of["geo-3"], answers[("geo-3", "large")], graded=False)
    fake.pool.fail("judge", once, "garbage")
    fake.pool.fail("judge", never, "garbage", "garbage", "garbage")
    report = judge_store(store, "llm", tmp_path / "llm.csv", judge=judge)
    rows = read_rows(tmp_path / "llm.csv")
    assert report.judge == "llm:judge" and judge.malformed == 4
    labels = store.labels("llm:judge")
    assert labels[("geo-2", "small")][0] == world.truth("small", "geo-2")  # right on the second try
    assert labels[("geo-3", "large")][0] is None and ("geo-3", "large") not in rows  # never valid: unknown
    assert rows == {k: world.truth(k[1], k[0]) for k in labels if k != ("geo-3", "large")}
    assert len(rows) == 14 and report.judge_cost_usd > 0 and report.unknown["large"] == 1


def test_self_judging_is_refused_unless_allowed(collected: tuple[Path, AnswerStore], fake: Loopback) -> None:
    _, store = collected
    judge = functools.partial(
        llm_judge, store, load_pool(fake.pool_file), graded=False, pairwise=False, settings=JUDGE_SETTINGS
    )
    with pytest.raises(ConfigError, match="judge large also answers in this store"):
        judge("large", allow_self_judge=False)
    _, notes = judge("large", allow_self_judge=True)
    assert notes and "self-judging" in notes[0]
    with pytest.raises(ConfigError, match="'gpt-9' is not a model of the pool"):
        judge("gpt-9", allow_self_judge=False)


@pytest.mark.parametrize(
    ("judge_model", "message"), [("nope", "'nope' is not a model of the pool"), ("small", "--allow-self-judge")]
)
def test_cli_judge_refuses_a_judge_outside_the_pool_or_judging_itself(
    tmp_path: Path, collected: tuple[Path, AnswerStore], fake: Loopback, judge_model: str, message: str
) -> None:
    store, out = str(tmp_path / "s.db"), str(tmp_path / "x.csv")
    result = ladder(
        "judge", "--store", store, "--judge", "llm", "--judge-model", judge_model, "--pool", str(fake.pool_file),
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 2 and message in result.stderr


def test_cli_judge_refuses_a_missing_store(tmp_path: Path) -> None:
    missing = ladder(
        "judge", "--store", str(tmp_path / "none.db"), "--judge", "vote", "--out", str(tmp_path / "x.csv")
    )
    assert missing.returncode == 2 and "no such store" in missing.stderr


def test_pairwise_counts_only_verdicts_both_orders_agree_on(
    tmp_path: Path, collected: tuple[Path, AnswerStore], fake: Loopback
) -> None:
    _, store = collected
    config = load_pool(fake.pool_file)
    fake.pool.answer = world.pairwise_judge
    judge, _ = llm_judge(
        store, config, "judge", allow_self_judge=False, graded=False, pairwise=True, settings=JUDGE_SETTINGS
    )
    judge_store(store, "llm", tmp_path / "fair.csv", judge=judge)
    fair = store.labels("llm:judge:pairwise")
    assert fair[("geo-1", "large")][0] == 1.0 and fair[("geo-1", "small")][0] == 0.0  # only large is right
    assert fair[("add-0", "large")][0] == 0.5  # both right: a tie in both orders
    fake.pool.answer = world.first_position_judge
    biased, _ = llm_judge(
        store, config, "judge", allow_self_judge=False, graded=False, pairwise=True, settings=JUDGE_SETTINGS
    )
    with pytest.raises(ConfigError, match="no known label"):
        judge_store(store, "llm", tmp_path / "biased.csv", judge=biased)
    assert all(v[0] is None for v in store.labels("llm:judge:pairwise").values())
