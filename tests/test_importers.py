"""Tests of the importers: synthetic NVIDIA and RouterBench files, and the real public data in shared/data."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from ladder.core.errors import DataError, DataWarning
from ladder.training.dataset import RoutingData, read_canonical, write_canonical
from ladder.training.importers import (
    IMPORTERS,
    from_llmrouter,
    from_mmlu_pro,
    from_nvidia_v3,
    from_routellm,
    from_routerbench_wide,
    import_data,
    import_llmrouter_dir,
    text_id,
)


def shared_data() -> Path:
    """The public routing data: $LADDER_SHARED_DATA, else `../shared/data` beside the repository."""
    override = os.environ.get("LADDER_SHARED_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real(folder: str) -> Path:
    path = shared_data() / folder
    if not path.is_dir():
        pytest.skip(f"public routing data not found at {path} (set LADDER_SHARED_DATA to its folder)")
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- NVIDIA v3 (long CSV) ---------------------------------------------------------------------------


def test_nvidia_v3(tmp_path: Path) -> None:
    path = write(
        tmp_path / "nv.csv",
        "question,model,isCorrect,output_tokens\n"
        "What is 2+2?,small,True,12\n"
        "What is 2+2?,large,False,40\n"
        '"Name a colour, please",large,1,\n'
        "What is 2+2?,medium,,3\n",
    )
    data = from_nvidia_v3(path)
    assert data.models == ["small", "large"]
    assert data.questions == ["What is 2+2?", "Name a colour, please"]
    assert data.question_ids == [text_id("What is 2+2?"), text_id("Name a colour, please")]
    assert data.labels[0].tolist() == [1.0, 0.0]
    assert np.isnan(data.labels[1, 0]) and data.labels[1, 1] == 1.0
    assert data.output_tokens[0].tolist() == [12.0, 40.0] and np.isnan(data.output_tokens[1, 1])
    assert import_data("nvidia-v3", path).digest() == data.digest()


def test_nvidia_v3_errors(tmp_path: Path) -> None:
    dup = write(tmp_path / "dup.csv", "question,model,isCorrect\nQ,a,True\nQ,a,False\n")
    with pytest.raises(DataError, match=r"dup\.csv:3: duplicate row .*'a'.*first at .*dup\.csv:2"):
        from_nvidia_v3(dup)
    missing = write(tmp_path / "m.csv", "question,model,correct\nQ,a,1\n")
    with pytest.raises(
        DataError, match=r"m\.csv: missing required column 'isCorrect'; columns found: question, mod"
    ):
        from_nvidia_v3(missing)
    bad = write(tmp_path / "b.csv", "question,model,isCorrect\nQ,a,maybe\n")
    with pytest.raises(DataError, match=r"b\.csv:2: isCorrect is not a boolean or a number: 'maybe'"):
        from_nvidia_v3(bad)


# --- RouterBench (wide CSV) -------------------------------------------------------------------------


def test_routerbench_wide(tmp_path: Path) -> None:
    path = write(
        tmp_path / "rb.csv",
        "sample_id,prompt,eval_name,gpt-4,gpt-4|total_cost,gpt-4|model_response,llama,llama|total_cost,"
        "oracle_model_to_route_to\n"
        "mmlu.0,What is 2+2?,mmlu,1.0,0.003,4,0.0,0.0001,gpt-4\n"
        "mtb.1,\"['Turn one', 'Turn two']\",mt-bench,0.9,0.004,ok,,,gpt-4\n",
    )
    data = from_routerbench_wide(path)
    assert data.models == ["gpt-4", "llama"]
    assert data.question_ids == ["mmlu.0", "mtb.1"]
    assert data.questions == ["What is 2+2?", "Turn one\n\nTurn two"]
    assert data.tasks == ["mmlu", "mt-bench"]
    np.testing.assert_allclose(data.labels[0], [1.0, 0.0])
    assert data.labels[1, 0] == np.float32(0.9) and np.isnan(data.labels[1, 1])
    np.testing.assert_allclose(data.costs[0], [0.003, 0.0001])
    assert np.isnan(data.costs[1, 1])
    assert import_data("routerbench", path).digest() == data.digest()


def test_routerbench_without_prompt_column(tmp_path: Path) -> None:
    path = write(tmp_path / "rb.csv", "text,gpt-4\nQ,1\n")
    with pytest.raises(DataError, match=r"rb\.csv: no prompt column .*columns found: text, gpt-4"):
        from_routerbench_wide(path)


def _routerbench_csv(path: Path, rows: list[tuple[str, str, tuple[float, ...]]]) -> Path:
    """A file in RouterBench's published wide layout (as in `arc_challenge_train.csv`)."""
    import csv

    models = ("WizardLM/WizardLM-13B-V1.2", "claude-instant-v1", "gpt-4-1106-preview")
    header = [
        "sample_id",
        "prompt",
        "eval_name",
        *models,
        *(f"{m}|model_response" for m in models),
        *(f"{m}|total_cost" for m in models),
        "oracle_model_to_route_to",
    ]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for sample_id, prompt, labels in rows:
            responses = ["A" if label else "C" for label in labels]
            costs = [f"{c:.6g}" for c in (1.2e-05, 8.1e-06, 3.3e-04)]
            oracle = models[labels.index(1.0)] if 1.0 in labels else models[0]
            writer.writerow([sample_id, repr([prompt]), "arc-challenge", *labels, *responses, *costs, oracle])
    return path


def test_routerbench_reused_sample_ids_get_distinct_ids(tmp_path: Path) -> None:
    """RouterBench's own files reuse a few sample_ids for different prompts: renamed, counted, not refused."""
    path = _routerbench_csv(
        tmp_path / "arc_challenge_train.csv",
        [
            ("arc-challenge.val.173", "Which gas do plants take in? A) O2 B) CO2", (1.0, 0.0, 1.0)),
            ("arc-challenge.val.174", "Which of these is a mammal? A) shark B) whale", (0.0, 1.0, 1.0)),
            ("arc-challenge.val.174", "A ball is dropped. What pulls it down? A) gravity", (1.0, 1.0, 1.0)),
            ("arc-challenge.val.174", "Plants make food by A) photosynthesis B) digestion", (0.0, 0.0, 1.0)),
        ],
    )
    with pytest.warns(DataWarning, match=r"2 row\(s\) reuse a sample_id .*arc-challenge\.val\.174"):
        data = from_routerbench_wide(path)
    assert data.question_ids == [
        "arc-challenge.val.173",
        "arc-challenge.val.174",
        "arc-challenge.val.174#2",
        "arc-challenge.val.174#3",
    ]
    assert data.questions[3] == "Plants make food by A) photosynthesis B) digestion"
    np.testing.assert_allclose(data.labels[3], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(data.costs[2], [1.2e-05, 8.1e-06, 3.3e-04], rtol=1e-5)
    assert data.tasks == ["arc-challenge"] * 4


def test_routerbench_import_cli_says_how_many_ids_it_renamed(tmp_path: Path) -> None:
    from tests.support import ladder

    path = _routerbench_csv(
        tmp_path / "rb.csv",
        [("x.1", "First prompt", (1.0, 0.0, 1.0)), ("x.1", "Second prompt", (0.0, 1.0, 1.0))],
    )
    result = ladder("import", "routerbench", str(path), "--out", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "1 row(s) reuse a sample_id" in result.stderr
    assert "Traceback" not in result.stderr
    assert read_canonical([tmp_path / "out.csv"]).question_ids == ["x.1", "x.1#2"]


# --- registry ---------------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(IMPORTERS) == {
        "canonical",
        "nvidia-v3",
        "routerbench",
        "llmrouter",
        "mmlu-pro",
        "routellm-mmlu",
        "routellm-gsm8k",
        "routellm-mt-bench",
        "cascades-llama",
    }


def test_unknown_format_and_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"unknown data format 'mmlu_pro' \(did you mean 'mmlu-pro'\?\); known"
    ):
        import_data("mmlu_pro", tmp_path)
    with pytest.raises(DataError, match=r"no such file or folder"):
        import_data("nvidia-v3", tmp_path / "absent.csv")
    a_file = write(tmp_path / "x.csv", "question,model,isCorrect\nQ,a,1\n")
    with pytest.raises(DataError, match=r"x\.csv: not a folder \(the mmlu-pro format expects a folder with "):
        import_data("mmlu-pro", a_file)
    with pytest.raises(DataError, match=r"missing questions\.jsonl, outputs_long\.csv\.gz"):
        import_data("mmlu-pro", tmp_path)
    with pytest.raises(DataError, match="is a directory, expected a file"):
        import_data("nvidia-v3", tmp_path)
    with pytest.raises(DataError, match=r"missing required column 'question_id'"):
        import_data("canonical", a_file)


def test_canonical_through_the_registry(tmp_path: Path) -> None:
    data = RoutingData.from_labels(["q"], ["Q"], ["m"], [[1.0]])
    write_canonical(data, tmp_path / "part.csv.gz")
    assert import_data("canonical", tmp_path / "part.csv.gz").digest() == data.digest()
    assert import_data("canonical", tmp_path).digest() == data.digest()


# --- real public data -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mmlu_pro() -> RoutingData:
    return from_mmlu_pro(real("mmlu_pro"))


def test_mmlu_pro_counts(mmlu_pro: RoutingData) -> None:
    assert len(mmlu_pro) == 12_032
    assert len(mmlu_pro.models) == 29
    assert int(mmlu_pro.known.sum()) == 347_215  # the rows in outputs_long.csv.gz
    assert np.isnan(mmlu_pro.labels).sum() == 12_032 * 29 - 347_215  # absent rows stay unknown
    assert len(set(mmlu_pro.tasks)) == 14 and None not in mmlu_pro.tasks
    assert set(mmlu_pro.splits) == {None}
    assert np.isnan(mmlu_pro.costs).all()
    accuracy = {m: s.accuracy for m, s in mmlu_pro.summary().per_model.items()}
    assert max(accuracy, key=lambda m: accuracy[m]) == "gemini-1.5-pro-002"
    assert 0.69 < accuracy["gemini-1.5-pro-002"] < 0.71


def test_mmlu_pro_text_is_question_then_lettered_options(mmlu_pro: RoutingData) -> None:
    first = json.loads((real("mmlu_pro") / "questions.jsonl").read_text(encoding="utf-8").split("\n", 1)[0])
    assert mmlu_pro.question_ids[0] == str(first["question_id"])
    letters = "ABCDEFGHIJ"[: len(first["options"])]
    expected = "\n".join(
        [first["question"], *(f"{k}. {o}" for k, o in zip(letters, first["options"], strict=True))]
    )
    assert mmlu_pro.questions[0] == expected
    assert mmlu_pro.questions[0].split("\n")[1].startswith("A. ")
    known = mmlu_pro.output_tokens[mmlu_pro.known]
    assert not np.isnan(known).any() and (known >= 0).all()


@pytest.fixture(scope="module")
def llmrouter() -> RoutingData:
    return import_llmrouter_dir(real("llmrouter"))


def test_llmrouter_counts(llmrouter: RoutingData) -> None:
    assert len(llmrouter) == 5_608 + 500
    assert len(llmrouter.split("train")) == 5_608 and len(llmrouter.split("test")) == 500
    assert len(llmrouter.models) == 9
    assert llmrouter.known.all()
    assert None not in llmrouter.tasks and len(set(llmrouter.tasks)) == 14
    graded = llmrouter.labels[(llmrouter.labels > 0) & (llmrouter.labels < 1)]
    assert graded.size > 0  # commongen's coverage score


def test_llmrouter_cost_estimate(llmrouter: RoutingData) -> None:
    assert np.isfinite(llmrouter.costs).all() and (llmrouter.costs > 0).all()
    assert np.isnan(llmrouter.output_tokens).all()  # the assumed 256 is not reported as data
    row, col = 0, llmrouter.models.index("qwen2.5-7b-instruct")  # $0.20 in and out per 1M tokens
    expected = (len(llmrouter.questions[row]) / 4 + 256) * 0.20 / 1e6
    assert llmrouter.costs[row, col] == pytest.approx(expected, rel=1e-5)


def test_llmrouter_single_file(tmp_path: Path) -> None:
    folder = real("llmrouter")
    data = from_llmrouter(folder / "dcrouter_test.json", folder / "default_query_test.jsonl")
    assert len(data) == 500 and set(data.splits) == {None}
    assert np.isnan(data.costs).all() and None not in data.tasks


def test_routellm_mmlu() -> None:
    folder = real("routellm")
    everything = from_routellm(folder, "mmlu", drop_contaminated=False)
    assert len(everything) == 14_042
    assert everything.models == ["mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"]
    assert len(set(everything.tasks)) == 57 and everything.known.all()
    assert len(import_data("routellm-mmlu", folder)) == 14_042 - 5  # as RouteLLM evaluates it


def test_routellm_gsm8k() -> None:
    folder = real("routellm")
    everything = from_routellm(folder, "gsm8k", drop_contaminated=False)
    assert len(everything) == 1_319
    assert not np.isnan(everything.output_tokens).any()
    assert len(from_routellm(folder, "gsm8k")) == 1_319 - 12


def test_routellm_mt_bench() -> None:
    folder = real("routellm")
    graded = from_routellm(folder, "mt_bench", drop_contaminated=False)
    assert len(graded) == 80 and graded.known.all()
    assert graded.labels.min() >= 0.1 and graded.labels.max() <= 1.0
    assert len(set(graded.tasks)) == 8
    binary = from_routellm(folder, "mt_bench", drop_contaminated=False, mt_bench_threshold=8.0)
    assert set(np.unique(binary.labels).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(binary.labels, (graded.labels * 10 >= 8.0 - 1e-6).astype(np.float32))
    assert len(import_data("routellm-mt-bench", folder)) == 72


def test_real_import_round_trips(tmp_path: Path, llmrouter: RoutingData) -> None:
    path = write_canonical(llmrouter, tmp_path / "llmrouter.csv.gz")
    back = read_canonical([path])
    assert back.digest() == llmrouter.digest()
    assert back.splits == llmrouter.splits and back.tasks == llmrouter.tasks
    assert not math.isnan(float(back.costs[0, 0]))
