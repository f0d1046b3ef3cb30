"""`ladder collect` on a loopback fake pool: answers stored once, failures handled, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from collect_support import world
from collect_support.harness import Loopback, run_collect
from collect_support.pool_server import pool_yaml

from ladder.core.errors import ConfigError, DataError
from ladder.core.pool import load_pool
from ladder.training.collect import AnswerStore, CallSettings, read_questions
from ladder.training.collect.calls import CUT_OFF, EMPTY
from tests.support import ladder

pytest_plugins = ["collect_support.fixtures", "postgres_support"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test keeps its answers: a SQLite file, or a database on a real PostgreSQL server (one code path)."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    return str(request.getfixturevalue("postgres_url"))


def questions_file(tmp_path: Path, n_each: int = 3) -> Path:
    return world.write_questions(tmp_path / "questions.jsonl", world.questions(n_each))


# -- the questions file --------------------------------------------------------------------------------


def test_plain_text_and_jsonl_questions(tmp_path: Path) -> None:
    plain = tmp_path / "q.txt"
    plain.write_text("What is 2 plus 2?\n\n  Name a prime.  \n", encoding="utf-8")
    read = read_questions(plain)
    assert [q.text for q in read] == ["What is 2 plus 2?", "Name a prime."]
    assert read[0].id.startswith("q-") and read[0].id == read_questions(plain)[0].id  # stable ids
    chat = tmp_path / "q.jsonl"
    chat.write_text(
        json.dumps(
            {
                "id": 7,
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
            }
        )
        + "\n"
        + json.dumps({"id": "b", "question": "Sum?", "reference": 4, "task": "math", "tests": ["assert f() == 1"]})
        + "\n",
        encoding="utf-8",
    )
    first, second = read_questions(chat)
    assert first.id == "7" and first.text == "Be brief.\n\nHi?" and len(first.messages) == 2
    assert second.reference == "4" and second.task == "math" and second.tests == "assert f() == 1"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "\n  \n", "no questions in the file"),
        ("bad.jsonl", '{"id": 1, "question": "ok"}\n{"id": 2, "question": \n', "bad.jsonl:2: not valid JSON"),
        ("keys.jsonl", '{"id": 1, "prompt": "x"}\n', "keys.jsonl:1: unknown key(s) prompt"),
        (
            "dup.jsonl",
            '{"id": 1, "question": "a"}\n{"id": 1, "question": "b"}\n',
            "dup.jsonl:2: duplicate id '1'",
        ),
        ("both.jsonl", '{"id": 1, "question": "a", "messages": []}\n', "give exactly one of"),
    ],
)
def test_bad_questions_files_name_the_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_questions(path)


def test_cli_refuses_a_bad_line_with_its_number(tmp_path: Path, loopback: Loopback) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "a", "question": "fine"}\nnot json\n', encoding="utf-8")
    result = ladder(
        "collect",
        "--pool",
        str(loopback.pool_file),
        "--questions",
        str(bad),
        "--store",
        str(tmp_path / "s.db"),
    )
    assert result.returncode == 2
    assert f"{bad}:2: not valid JSON" in result.stderr and "Traceback" not in result.stderr


# -- collecting ------------------------------------------------------------------------------------------


def test_every_pair_answered_once_and_recorded(tmp_path: Path, fake: Loopback, store_at: str) -> None:
    questions = read_questions(questions_file(tmp_path))
    report, store = run_collect(store_at, fake.pool_file, questions)
    answers = {(a.question_id, a.model): a for a in store.answers()}
    assert len(answers) == len(questions) * 2 == fake.pool.total()
    assert all(n == 1 for n in fake.pool.calls.values())
    assert report.models["small"].answered == report.models["large"].answered == len(questions)
    large = answers[("geo-1", "large")]
    assert large.ok and large.text == world.answer("large", [{"role": "user", "content": questions[3].text}])
    assert large.finish_reason == "stop" and large.input_tokens and large.output_tokens == len(large.text.split())
    config = load_pool(fake.pool_file)
    price = config.model("large").price
    assert large.cost_usd == pytest.approx(
        (large.input_tokens * price.input_per_1m + large.output_tokens * price.output_per_1m) / 1e6
    )
    assert large.ttft_s is not None and 0 < large.ttft_s <= large.latency_s
    assert large.logprobs and all(t["logprob"] == -0.25 for t in large.logprobs)
    assert all(body.get("logprobs") is True and body.get("stream") for body in fake.pool.bodies)
    # a second run asks nothing: every pair has its row
    again, _ = run_collect(store_at, fake.pool_file, questions)
    assert again.planned == 0 and fake.pool.total() == len(questions) * 2


def test_failures_are_retried_or_recorded_per_model(tmp_path: Path, fake: Loopback, store_at: str) -> None:
    questions = read_questions(questions_file(tmp_path, 2))
    by_id = {q.id: q.text for q in questions}
    fake.pool.fail("small", by_id["add-0"], "500", "500")
    fake.pool.fail("small", by_id["add-1"], "429:1")
    fake.pool.fail("large", by_id["add-0"], "hang")
    # on every attempt: a call retried after a timeout on a busy machine still ends the same way
    fake.pool.fail("large", by_id["geo-0"], *["empty"] * 4)
    fake.pool.fail("large", by_id["geo-1"], *["length"] * 4)
    fake.pool.fail("small", by_id["geo-1"], *["500"] * 5)
    settings = CallSettings(max_tokens=64, timeout_s=0.5, retries=3, backoff_s=0.01, max_backoff_s=0.05)
    report, store = run_collect(store_at, fake.pool_file, questions, settings=settings)
    answers = {(a.question_id, a.model): a for a in store.answers()}
    assert answers[("add-0", "small")].ok and answers[("add-0", "small")].attempts == 3
    first, second = fake.pool.times[("small", by_id["add-1"])]
    assert second - first >= 0.95  # Retry-After: 1 was honoured
    assert answers[("add-0", "large")].ok and fake.pool.calls[("large", by_id["add-0"])] == 2  # timed out, asked again
    assert answers[("geo-0", "large")].failure == EMPTY and not answers[("geo-0", "large")].ok
    assert answers[("geo-1", "large")].failure == CUT_OFF and answers[("geo-1", "large")].finish_reason == "length"
    assert report.models["large"].failed == {EMPTY: 1, CUT_OFF: 1}
    # a call that never succeeds is reported, not stored: the next run asks it again
    assert ("geo-1", "small") not in answers and fake.pool.calls[("small", by_id["geo-1"])] == 4
    assert sum(report.models["small"].errors.values()) == 1
    again, _ = run_collect(store_at, fake.pool_file, questions, settings=settings)
    assert again.planned == 1 and again.models["small"].answered == 1


def test_logprobs_dropped_for_a_model_that_refuses_them(tmp_path: Path, fake: Loopback) -> None:
    fake.pool.no_logprobs.add("small")
    questions = read_questions(questions_file(tmp_path, 1))
    fake.pool.fail("large", questions[0].text, "reject", "reject")  # refused with and without logprobs
    report, store = run_collect(tmp_path / "s.db", fake.pool_file, questions, concurrency=1)
    answers = {(a.question_id, a.model): a for a in store.answers()}
    assert all(answers[(q.id, "small")].ok and answers[(q.id, "small")].logprobs is None for q in questions)
    assert fake.pool.total("small") == 3  # one refusal, then both questions without logprobs
    # a request refused for another reason is not retried, and does not cost the model its logprobs
    assert (questions[0].id, "large") not in answers and fake.pool.total("large") == 3
    assert "refused the request (HTTP 400)" in next(iter(report.models["large"].errors))
    assert answers[(questions[1].id, "large")].logprobs is not None


def test_budget_stops_before_it_is_exceeded(tmp_path: Path, fake: Loopback, store_at: str) -> None:
    questions = read_questions(questions_file(tmp_path, 6))
    report, store = run_collect(store_at, fake.pool_file, questions, budget_usd=0.0015, concurrency=2)
    assert report.stopped_by_budget and report.not_started > 0
    assert 0 < store.spent_usd() <= 0.0015
    assert len(list(store.answers())) == fake.pool.total() < len(questions) * 2


def test_store_of_another_pool_is_refused(tmp_path: Path, fake: Loopback, store_at: str) -> None:
    questions = read_questions(questions_file(tmp_path, 1))
    run_collect(store_at, fake.pool_file, questions, models=["small"])
    other = tmp_path / "other.yaml"
    other.write_text(pool_yaml(fake.url, world.MODELS).replace("fake-small", "another-small"), encoding="utf-8")
    store = AnswerStore(store_at, create=False)
    with pytest.raises(DataError, match=r"made with a different pool .*small was 'fake-small', now 'another-small'"):
        store.bind_pool(load_pool(other), str(other))
    result = ladder(
        "collect",
        "--pool",
        str(other),
        "--questions",
        str(tmp_path / "questions.jsonl"),
        "--store",
        str(store_at),
    )
    assert result.returncode == 2 and "different pool" in result.stderr


def test_unset_key_variable_is_refused_before_any_call(
    tmp_path: Path, fake: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LADDER_TEST_FAKE_KEY", raising=False)
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text(pool_yaml(fake.url, world.MODELS, key_env="LADDER_TEST_FAKE_KEY"), encoding="utf-8")
    questions = read_questions(questions_file(tmp_path, 1))
    with pytest.raises(ConfigError, match="LADDER_TEST_FAKE_KEY is not set"):
        run_collect(tmp_path / "s.db", keyed, questions)
    result = ladder(
        "collect",
        "--pool",
        str(keyed),
        "--questions",
        str(tmp_path / "questions.jsonl"),
        "--store",
        str(tmp_path / "t.db"),
    )
    assert result.returncode == 2 and "LADDER_TEST_FAKE_KEY" in result.stderr
    assert fake.pool.total() == 0


def test_dry_run_estimate_matches_the_full_run(tmp_path: Path, fake: Loopback, store_at: str) -> None:
    path = questions_file(tmp_path, 12)
    store = store_at
    args = (
        "collect",
        "--pool",
        str(fake.pool_file),
        "--questions",
        str(path),
        "--store",
        str(store),
        "--models",
        "small,large",
    )
    dry = ladder(*args, "--dry-run", check=True)
    estimate = json.loads(dry.stdout)
    assert fake.pool.total() == 2 * 5 and estimate["sample_questions"] == 5 and estimate["questions"] == 24
    assert "Dry-run estimate" in dry.stderr
    ladder(*args, check=True)
    assert fake.pool.total() == 2 * 24  # the sample's answers were kept, not asked again
    spent = {m: 0.0 for m in ("small", "large")}
    for answer in AnswerStore(store, create=False).answers():
        spent[answer.model] += answer.cost_usd
    for row in estimate["models"]:
        assert row["calls"] == 24 and row["remaining_calls"] == 19
        assert row["cost_usd"] == pytest.approx(spent[row["model"]], rel=0.2)


def test_unknown_model_in_models_option(tmp_path: Path, fake: Loopback) -> None:
    questions = read_questions(questions_file(tmp_path, 1))
    with pytest.raises(ConfigError, match="--models names nope"):
        run_collect(tmp_path / "s.db", fake.pool_file, questions, models=["small", "nope"])


def test_system_prompt_and_extra_fields_reach_the_model(tmp_path: Path, fake: Loopback) -> None:
    data = yaml.safe_load(pool_yaml(fake.url, world.MODELS))
    data["models"][0]["system_prompt"] = "Answer tersely."
    data["models"][0]["extra_body"] = {"top_p": 0.5}
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    questions = read_questions(questions_file(tmp_path, 1))
    url = f"sqlite:///{tmp_path / 'by-url.db'}"  # a database URL takes the same path as a file name
    _, store = run_collect(url, pool_file, questions, models=["small"])
    assert len(list(store.answers())) == 2
    for body in fake.pool.bodies:
        assert body["model"] == "fake-small" and body["top_p"] == 0.5 and body["max_tokens"] == 64
        assert body["messages"][0] == {"role": "system", "content": "Answer tersely."}
