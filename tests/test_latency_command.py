"""`ladder latency`: the collect store's measured calls become the pool file's `latency:` entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from gateway_support.pool import pool_data
from typer.testing import CliRunner

from ladder.cli.main import app
from ladder.core.errors import ConfigError
from ladder.core.latency import pool_priors
from ladder.core.pool import load_pool
from ladder.training.collect.questions import Question
from ladder.training.collect.store import Answer, AnswerStore

# model: (time to first token s, decode tokens/s)
SPEEDS = {"small-local": (0.1, 200.0), "vision-pro": (1.5, 40.0)}


@pytest.fixture()
def measured(tmp_path: Path) -> tuple[Path, Path]:
    pool_path = tmp_path / "pool.yaml"
    text = yaml.safe_dump(pool_data("http://127.0.0.1:9", tmp_path / "checkpoint"), sort_keys=False)
    pool_path.write_text("# our pool: keep this comment\n" + text, encoding="utf-8")
    store = AnswerStore(tmp_path / "answers.db", create=True)
    store.bind_pool(load_pool(pool_path), str(pool_path))
    questions = [
        Question(f"q{i}", f"question {i}", ({"role": "user", "content": f"question {i}"},)) for i in range(7)
    ]
    store.add_questions(questions)
    for i, q in enumerate(questions):
        for model, (ttft, speed) in SPEEDS.items():
            tokens = 50 + 20 * i
            total = ttft + tokens / speed + (30.0 if i == 6 else 0.0)  # one stalled call
            store.put_answer(Answer(q.id, model, "ok", "an answer", "stop", 10, tokens, 0.0, total, ttft))
    store.put_answer(
        Answer("q0", "mid-cloud", "failed", "", "length", 10, 0, 0.0, 99.0, None, failure="empty")
    )
    store.close()
    return tmp_path / "answers.db", pool_path


def test_the_pool_file_gets_each_measured_models_latency(measured: tuple[Path, Path]) -> None:
    store, pool_path = measured
    result = CliRunner().invoke(app, ["latency", "--store", str(store), "--pool", str(pool_path), "--write"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["written"] == ["small-local", "vision-pro"]  # mid-cloud only failed: nothing to learn
    priors = pool_priors(load_pool(pool_path).models)
    assert set(priors) == {"small-local", "vision-pro"}
    for model, (ttft, speed) in SPEEDS.items():
        assert priors[model].ttft_s == pytest.approx(ttft, abs=1e-3)
        assert priors[model].tokens_per_s == pytest.approx(speed, rel=0.01)  # the stall is ignored
    assert pool_path.read_text().startswith("# our pool: keep this comment\n")


def test_write_needs_a_pool(measured: tuple[Path, Path]) -> None:
    result = CliRunner().invoke(app, ["latency", "--store", str(measured[0]), "--write"])
    assert isinstance(result.exception, ConfigError)
    assert "--pool" in str(result.exception)
