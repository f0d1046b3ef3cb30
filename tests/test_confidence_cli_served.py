"""`ladder evaluate-confidence --write-plan` end to end: the real command writes the plan into a pool file,
the gateway serves that file with the answers fake on loopback, and each chat is what `play_plan` says of
the same replies; bad inputs are one line naming the file, a non-zero exit, and the pool file untouched.

The data is generated here (the shape of ``cascades_llama``: option letters read by their own logprob,
free text by a priced self-check, ``-inf`` and exact-zero confidences, a train/test split) and written by
the canonical writer, so the test runs wherever the repository does."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from gateway_support.answers_upstream import AnswersUpstream
from gateway_support.common import UPSTREAM_KEY, UPSTREAM_KEY_ENV, RunningGateway, serve_gateway
from gateway_support.pool import NAMES, shared_pool

from ladder.bench.server_thread import ServerThread
from ladder.core.cascade import mean_logprob
from ladder.core.confidence_plan import CalibratedPlan
from ladder.core.logprobs import TokenLogprob, yes_logprob
from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.training.dataset import RoutingData, write_canonical
from ladder.training.served_plan import play_plan
from tests.support import ladder
from tests.test_gateway_cascade_plan import answer_usd, check_usd

pytest_plugins = ["gateway_support.fixtures"]

FLOOR = -30.0  # the fake sends a finite token logprob (JSON has no -inf): a recorded -inf is sent as this


def generated(n: int = 240, seed: int = 0) -> RoutingData:
    """Questions answered by the test pool's three models: letters (their own logprob) on half, free text
    (a self-check's log P(yes), priced) on the rest; the dearer model is right more often, confidences
    track correctness, a few are -inf or exactly 0; a third of the questions are held out."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < [0.45, 0.65, 0.85]).astype(float)
    letter = np.arange(n) % 2 == 0
    wrong_letter = np.array(["B", "C", "D"])[rng.integers(0, 3, (n, 3))]
    wrong_city = np.array(["Lyon", "Nice", "Metz"])[rng.integers(0, 3, (n, 3))]
    answers = np.where(
        letter[:, None], np.where(labels == 1, "A", wrong_letter), np.where(labels == 1, "Paris", wrong_city)
    ).astype(object)
    lp = np.log(np.clip(0.55 * labels + 0.45 * rng.random((n, 3)), 1e-9, 1.0))
    lp[rng.random((n, 3)) < 0.03] = -np.inf
    lp[rng.random((n, 3)) < 0.03] = 0.0
    return RoutingData.from_labels(
        [f"q{i}" for i in range(n)],
        [f"question {i} about {'letters' if letter[i] else 'cities'}" for i in range(n)],
        list(NAMES),
        labels,
        costs=np.tile([2e-5, 2e-4, 2e-3], (n, 1)),
        answers=answers,
        answer_logprobs=lp,
        confidence_kinds=np.where(letter[:, None], "answer_logprob", "self_check_logprob").repeat(3, axis=1),
        confidence_costs=np.where(letter[:, None], 0.0, [[1e-5, 1e-4, 1e-3]]),
        splits=["train" if i % 3 else "test" for i in range(n)],
    )


def cli_args(data: Path, out: Path, pool: Path) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--prompts", "words", "--write-plan", str(pool)]


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_canonical(generated(), tmp_path_factory.mktemp("data") / "answers.csv")


@pytest.fixture(scope="module")
def written(
    tmp_path_factory: pytest.TempPathFactory, answers_server: tuple[AnswersUpstream, ServerThread], data_csv: Path
) -> tuple[Path, dict[str, Any]]:
    """A copy of the test pool with the plan `evaluate-confidence --write-plan` wrote into it, and the report."""
    folder = tmp_path_factory.mktemp("written")
    pool = shared_pool(folder, answers_server[1].url, UPSTREAM_KEY_ENV)
    out = folder / "report"
    run = ladder("evaluate-confidence", *cli_args(data_csv, out, pool))
    assert run.returncode == 0, run.stderr
    assert f"wrote routing.cascade.plan into {pool}" in " ".join(run.stderr.split())
    report: dict[str, Any] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return pool, report


@pytest.fixture()
def served(
    written: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RunningGateway, Router, CalibratedPlan]]:
    """The gateway started on the written pool file as it is on disk."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    pool = load_pool(written[0])
    assert pool.routing.cascade.plan is not None and pool.routing.cascade.logprobs
    router = Router.from_pool(pool)
    running: list[ServerThread] = []
    try:
        yield serve_gateway(written[0], router, running), router, pool.routing.cascade.plan
    finally:
        for server in running:
            server.stop()


def test_the_written_plan_is_the_reports_served_plan(written: tuple[Path, dict[str, Any]]) -> None:
    pool, report = written
    plan = load_pool(pool).routing.cascade.plan
    assert plan is not None and plan.names == NAMES
    setting = dict(part.split("=") for part in report["served_plan"]["setting"].split())
    assert float(setting["cost_weight"]) == pytest.approx(plan.cost_weight, rel=1e-3)
    assert (float(setting["margin"]), int(setting["max_stages"])) == (plan.margin, plan.max_stages)
    assert plan.max_stages > 1 and plan.states  # the data makes a cascade pay: more than one stage


def test_chats_on_the_written_pool_are_served_as_play_plan_plays_the_same_replies(
    served: tuple[RunningGateway, Router, CalibratedPlan], answers: AnswersUpstream
) -> None:
    """Held-out questions, each model answering as it did in the data: the same models asked in the same
    order, the same self-checks, the same answer returned, the same cost; at least one chat escalates."""
    gateway, router, plan = served
    data = generated().split("test")
    assert data.answers is not None and data.answer_logprobs is not None and data.confidence_kinds is not None
    client = gateway.openai()
    escalated = 0
    for i in range(0, len(data), 4):
        question = data.questions[i]
        answers.reset()
        texts = np.array([data.answers[i]], dtype=object)
        answer_lp, check_lp = np.full((1, 3), np.nan), np.full((1, 3), np.nan)
        for j, model in enumerate(NAMES):
            text, lp = str(data.answers[i, j]), float(data.answer_logprobs[i, j])
            if data.confidence_kinds[i, j] == "self_check_logprob":
                answers.set(model, text, logprob=-0.05, yes_logprob=lp)
                no = math.log1p(-math.exp(lp)) if lp > -math.inf else 0.0
                top = tuple((t, v) for t, v in (("Yes", lp), ("No", no)) if math.isfinite(v))
                token, first = ("Yes", lp) if lp >= no else ("No", no)
                check_lp[0, j] = yes_logprob([TokenLogprob(token, first, top)])  # type: ignore[assignment]
                answer_lp[0, j] = -0.05
            else:
                sent = max(lp, FLOOR)
                answers.set(model, text, logprob=sent)
                answer_lp[0, j] = mean_logprob([TokenLogprob(w, sent) for w in text.split(" ")])  # type: ignore[assignment]
        raw = client.chat.completions.with_raw_response.create(
            model="ladder-cascade", messages=[{"role": "user", "content": question}]
        )
        completion, headers = raw.parse(), raw.headers
        router_p = np.array([[c.p_correct for c in router.route(question).decision.candidates]])
        costs = np.array([[answer_usd(m, str(t)) for m, t in zip(NAMES, texts[0], strict=True)]])
        checks = np.array([[check_usd(m) for m in NAMES]])
        played = play_plan(plan, router_p, texts, answer_lp, check_lp, costs, checks)
        order = [NAMES[j] for j in played.order[0] if j >= 0]
        escalated += len(order) > 1
        assert answers.asked() == order, question
        assert answers.checked() == [m for m in order if played.checked[0, NAMES.index(m)]]
        returned = NAMES[int(played.returned[0])]
        assert headers["x-ladder-model"] == returned
        assert completion.choices[0].message.content == data.answers[i, NAMES.index(returned)]
        assert float(headers["x-ladder-cost-usd"]) == pytest.approx(played.cost[0], abs=2e-8)
        stages = completion.model_extra["ladder"]["cascade"]["stages"]
        assert [s["model"] for s in stages if s["role"] == "answer"] == order
        assert sum(s["cost_usd"] for s in stages) == pytest.approx(played.cost[0], rel=1e-9)
    assert escalated > 0


# ---- bad inputs --------------------------------------------------------------------------------------------


def refused(args: list[str], pool: Path, names: str) -> str:
    """Run the command that must fail; its one error line (checked: names ``names``, no traceback, exit
    status non-zero, ``pool`` byte for byte as it was)."""
    before = pool.read_bytes() if pool.is_file() else None
    run = ladder("evaluate-confidence", *args)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    line = " ".join(run.stderr.split())
    assert line.startswith("error: ") and names in line, run.stderr
    assert (pool.read_bytes() if pool.is_file() else None) == before
    assert not [p for p in pool.parent.glob(f".{pool.name}.*")]  # no partial file left beside it
    return line


def test_a_pool_without_the_datas_models_is_refused_before_the_work(
    tmp_path: Path, data_csv: Path, answers_server: tuple[AnswersUpstream, ServerThread]
) -> None:
    pool = shared_pool(tmp_path, answers_server[1].url, UPSTREAM_KEY_ENV)
    document = yaml.safe_load(pool.read_text(encoding="utf-8"))
    document["models"] = [m for m in document["models"] if m["name"] != "vision-pro"]
    pool.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    line = refused(cli_args(data_csv, tmp_path / "out", pool), pool, str(pool))
    assert "vision-pro" in line
    assert not (tmp_path / "out").exists()  # refused before the work: no report either


def test_a_file_that_is_no_pool_is_refused(tmp_path: Path, data_csv: Path) -> None:
    pool = tmp_path / "pool.yaml"
    pool.write_text("models: [unclosed\n", encoding="utf-8")
    refused(cli_args(data_csv, tmp_path / "out", pool), pool, str(pool))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes through file permissions")
def test_a_pool_in_a_folder_that_cannot_be_written_is_refused_before_the_work(
    tmp_path: Path, data_csv: Path, answers_server: tuple[AnswersUpstream, ServerThread]
) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    pool = shared_pool(folder, answers_server[1].url, UPSTREAM_KEY_ENV)
    folder.chmod(0o555)
    try:
        refused(cli_args(data_csv, tmp_path / "out", pool), pool, str(pool))
    finally:
        folder.chmod(0o755)
    assert not (tmp_path / "out").exists()


def test_an_out_folder_that_cannot_be_made_is_refused_before_the_work(
    tmp_path: Path, data_csv: Path, answers_server: tuple[AnswersUpstream, ServerThread]
) -> None:
    """--out under a plain file: no one can make that folder, root included."""
    pool = shared_pool(tmp_path, answers_server[1].url, UPSTREAM_KEY_ENV)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    refused(cli_args(data_csv, blocker / "out", pool), pool, str(blocker / "out"))


def test_data_without_confidences_is_refused_naming_the_file(
    tmp_path: Path, answers_server: tuple[AnswersUpstream, ServerThread]
) -> None:
    pool = shared_pool(tmp_path, answers_server[1].url, UPSTREAM_KEY_ENV)
    bare = tmp_path / "bare.csv"
    rows = ["question_id,question,model,correct,cost_usd,split"]
    rows += [f"q{i},question {i},{m},{(i + j) % 2},0.001,{'train' if i % 3 else 'test'}"
             for i in range(12) for j, m in enumerate(NAMES)]  # fmt: skip
    bare.write_text("\n".join(rows) + "\n", encoding="utf-8")
    line = refused(cli_args(bare, tmp_path / "out", pool), pool, str(bare))
    assert "answer_logprob" in line
