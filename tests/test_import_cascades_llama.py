"""The cascades-llama importer on the real files, and the canonical columns it needs (-inf, zeros, calls)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ladder.core.errors import DataError
from ladder.training.dataset import RoutingData, read_canonical, write_canonical
from ladder.training.importers import import_data
from tests.support import ladder, shared_data

MODELS = ["llama3.2-1b", "llama3.2-3b", "llama3.1-8b", "llama3.1-70b", "llama3.1-405b"]


@pytest.fixture(scope="module")
def source() -> Path:
    return shared_data() / "cascades_llama"


@pytest.fixture(scope="module")
def imported(source: Path) -> RoutingData:
    return import_data("cascades-llama", source)


def _first_line(path: Path) -> dict[str, object]:
    with path.open(encoding="utf-8") as handle:
        item: dict[str, object] = json.loads(handle.readline())
    return item


def test_every_question_and_model_with_the_authors_split(imported: RoutingData) -> None:
    assert len(imported) == 5533
    assert imported.models == MODELS
    assert not np.isnan(imported.labels).any()
    splits = dict(zip(*np.unique(np.array(imported.splits), return_counts=True), strict=True))
    assert splits == {"test": 4048, "train": 1485}
    test = imported.split("test")
    assert sorted(set(test.tasks)) == ["medmcqa", "mmlu", "triviaqa", "truthfulqa"]
    # the figure: 405B is right on 83.2% of the pooled test questions
    assert float(test.labels[:, 4].mean()) == pytest.approx(0.832, abs=0.0005)


def test_cells_hold_the_recorded_call(source: Path, imported: RoutingData) -> None:
    item = _first_line(source / "triviaqa_test.jsonl")
    call = item["models"]["llama3.1-8b"]  # type: ignore[index]
    i, j = imported.question_ids.index(str(item["id"])), MODELS.index("llama3.1-8b")
    assert imported.questions[i] == item["prompt"]
    assert imported.answers is not None and imported.answers[i, j] == call["answer"]
    assert imported.labels[i, j] == float(call["correct"])
    assert imported.costs[i, j] == pytest.approx(call["answer_cost_usd"], rel=1e-6)
    assert imported.confidence_costs is not None and imported.latencies_ms is not None
    assert imported.confidence_costs[i, j] == pytest.approx(call["self_check_cost_usd"], rel=1e-6)
    assert imported.latencies_ms[i, j] == pytest.approx(call["latency_ms"], rel=1e-6)
    assert imported.answer_logprobs is not None
    assert imported.answer_logprobs[i, j] == pytest.approx(call["confidence"], rel=1e-6, abs=1e-9)


def test_confidence_kind_and_its_cost_follow_the_task(imported: RoutingData) -> None:
    assert imported.confidence_kinds is not None and imported.confidence_costs is not None
    tasks = np.array(imported.tasks)
    choice = np.isin(tasks, ["mmlu", "medmcqa"])
    assert set(imported.confidence_kinds[choice].ravel()) == {"answer_logprob"}
    assert set(imported.confidence_kinds[~choice].ravel()) == {"self_check_logprob"}
    assert (imported.confidence_costs[choice] == 0).all()
    assert (imported.confidence_costs[~choice] > 0).all()


def test_round_trip_keeps_zeros_and_call_columns(imported: RoutingData, tmp_path: Path) -> None:
    path = write_canonical(imported, tmp_path / "llama.csv.gz")
    back = read_canonical(path)
    assert back.question_ids == imported.question_ids and back.splits == imported.splits
    for name in ("labels", "costs", "answer_logprobs", "confidence_costs", "latencies_ms", "input_tokens"):
        np.testing.assert_array_equal(getattr(back, name), getattr(imported, name), err_msg=name)
    assert back.answer_logprobs is not None and int((back.answer_logprobs == 0).sum()) == 2  # exact ties
    assert back.confidence_kinds is not None and imported.confidence_kinds is not None
    assert (back.confidence_kinds == imported.confidence_kinds).all()


HEADER = "question_id,question,model,correct,answer,answer_logprob,confidence_kind,confidence_cost_usd\n"


def test_reader_accepts_minus_infinity_and_zero(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(HEADER + "q1,Q?,a,0,no,-inf,self_check_logprob,0.001\nq1,Q?,b,1,yes,0,answer_logprob,0\n")
    data = read_canonical(path)
    assert data.answer_logprobs is not None
    assert data.answer_logprobs[0, 0] == -math.inf and data.answer_logprobs[0, 1] == 0.0
    back = read_canonical(write_canonical(data, tmp_path / "back.csv"))
    assert back.answer_logprobs is not None and back.answer_logprobs[0, 0] == -math.inf


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("q1,Q?,a,0,no,inf,answer_logprob,0", "answer_logprob must be finite or -inf"),
        ("q1,Q?,a,0,no,0.5,answer_logprob,0", "answer_logprob must be a number <= 0"),
        ("q1,Q?,a,0,no,-1,p_yes,0", "confidence_kind 'p_yes' is not one of"),
        ("q1,Q?,a,0,no,-1,answer_logprob,-inf", "confidence_cost_usd must be finite"),
    ],
)
def test_reader_refuses_what_is_not_a_confidence(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + row + "\n")
    with pytest.raises(DataError, match=message) as caught:
        read_canonical(path)
    assert f"{path}:2" in str(caught.value)


def test_importer_names_the_bad_line(tmp_path: Path, source: Path) -> None:
    item = _first_line(source / "mmlu_test.jsonl")
    item["models"]["llama3.2-1b"]["confidence_kind"] = "entropy"  # type: ignore[index]
    (tmp_path / "mmlu_test.jsonl").write_text(json.dumps(item) + "\n")
    with pytest.raises(DataError, match=r"mmlu_test.jsonl:1: model 'llama3.2-1b': confidence_kind 'entropy'"):
        import_data("cascades-llama", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \*\.jsonl files"):
        import_data("cascades-llama", tmp_path / "empty")


def test_cli_imports_the_folder(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "llama.csv"
    result = ladder("import", "cascades-llama", str(source), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "5533 questions x 5 models" in result.stderr
    header = out.read_text(encoding="utf-8").split("\n", 1)[0]
    assert header == (
        "question_id,question,model,correct,cost_usd,output_tokens,task,split,answer,answer_logprob,"
        "confidence_kind,confidence_cost_usd,latency_ms,input_tokens"
    )
