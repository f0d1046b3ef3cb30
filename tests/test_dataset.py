"""Tests of RoutingData and the canonical CSV format: round trips, unknown labels, errors, atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ladder.core.errors import DataError
from ladder.training.dataset import RoutingData, read_canonical, split_by_id, write_canonical

HEADER = "question_id,question,model,correct,cost_usd,output_tokens,task,split\n"


def sample() -> RoutingData:
    nan = math.nan
    return RoutingData.from_labels(
        ["q1", "q2", "q3"],
        ["What is 2+2?", 'Say "hi", then\na new line', "  spaced  "],
        ["small", "large"],
        [[0.0, 1.0], [nan, 0.25], [1.0, nan]],
        costs=[[1e-5, 3e-4], [nan, 2.5e-4], [nan, nan]],
        output_tokens=[[12.5, 300.0], [nan, nan], [7.0, nan]],
        tasks=["math", None, "chat"],
        splits=["train", "test", None],
    )


def assert_same(a: RoutingData, b: RoutingData) -> None:
    assert a.question_ids == b.question_ids
    assert a.questions == b.questions
    assert a.models == b.models
    assert a.tasks == b.tasks
    assert a.splits == b.splits
    for name in ("labels", "costs", "output_tokens"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["data.csv", "data.csv.gz"])
def test_round_trip_preserves_everything(tmp_path: Path, name: str) -> None:
    data = sample()
    path = write_canonical(data, tmp_path / name)
    back = read_canonical([path])
    assert_same(data, back)
    assert back.digest() == data.digest()


def test_digest_is_the_sha256_of_the_written_file(tmp_path: Path) -> None:
    data = sample()
    path = write_canonical(data, tmp_path / "data.csv")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == data.digest()
    gz = write_canonical(data, tmp_path / "data.csv.gz")
    assert gz.read_bytes() == write_canonical(data, tmp_path / "again.csv.gz").read_bytes()
    assert gzip.decompress(gz.read_bytes()) == path.read_bytes()


def test_digest_changes_with_content() -> None:
    data, other = sample(), sample()
    other.labels[0, 0] = 0.5
    assert data.digest() != other.digest()


def test_missing_row_is_unknown_not_wrong(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.csv", "question_id,question,model,correct\nq1,Q one,a,1\nq1,Q one,b,0\nq2,Q two,a,0\n"
    )
    data = read_canonical([path])
    assert data.models == ["a", "b"]
    assert data.labels[0].tolist() == [1.0, 0.0]
    assert data.labels[1, 0] == 0.0
    assert np.isnan(data.labels[1, 1])
    assert np.isnan(data.costs).all() and np.isnan(data.output_tokens).all()
    assert data.tasks == [None, None] and data.splits == [None, None]
    assert data.summary().per_model["b"].coverage == 0.5


def test_graded_labels_and_optional_columns(tmp_path: Path) -> None:
    text = "model,question_id,correct,question,task,cost_usd\nm,1,0.75,Q,qa,0.002\nn,1,0,Q,,\n"
    data = read_canonical([write(tmp_path / "d.csv", text)])
    assert data.labels.tolist() == [[0.75, 0.0]]
    assert data.costs[0, 0] == np.float32(0.002) and np.isnan(data.costs[0, 1])
    assert data.tasks == ["qa"]


def test_files_merge(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "question_id,question,model,correct\nq1,Q one,a,1\n")
    b = write(
        tmp_path / "b.csv", "question_id,question,model,correct,split\nq1,Q one,b,0,test\nq2,Q two,b,1,\n"
    )
    data = read_canonical([a, b])
    assert data.question_ids == ["q1", "q2"]
    assert data.models == ["a", "b"]
    assert data.splits == ["test", None]
    assert np.isnan(data.labels[1, 0])


HEAD = "question_id,question,model,correct"


@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        pytest.param(
            {"a.csv": f"{HEAD}\nq1,Q one,a,1\n", "b.csv": f"{HEAD}\nq1,Q uno,b,1\n"},
            r"b\.csv:2: question_id 'q1' has a different question text .*a\.csv:2",
            id="same id, other text across files",
        ),
        pytest.param(
            {"d.csv": f"{HEAD}\nq1,Q,a,1\nq2,R,a,1\nq1,Q,a,0\n"},
            r"d\.csv:4: duplicate row .*'q1'.*'a'.*first at .*d\.csv:2",
            id="duplicate pair",
        ),
        pytest.param(
            {"a.csv": f"{HEAD}\nq1,Q,a,1\n", "b.csv": f"{HEAD}\nq1,Q,a,1\n"},
            r"b\.csv:2: duplicate row",
            id="duplicate pair across files",
        ),
        pytest.param(
            {"d.csv": f"{HEAD},cost\nq1,Q,a,1,0.1\n"}, r"d\.csv: unknown column\(s\) 'cost'", id="unknown column"
        ),
        pytest.param(
            {"d.csv": f"{HEAD}\nq1,Q,a,1\nq2,R,a,1.5\n"},
            r"d\.csv:3: correct must be a number in \[0, 1\]",
            id="correct out of range",
        ),
        pytest.param(
            {"d.csv": f"{HEAD}\nq1,Q,a,1\nq2,R,a,yes\n"},
            r"d\.csv:3: correct is not a number",
            id="correct not a number",
        ),
        pytest.param(
            {"d.csv": f'{HEAD}\nq1,"two\nlines",a,1\nq2,R,a,-1\n'},
            r"d\.csv:4: correct must be",
            id="line numbers count multiline questions",
        ),
        pytest.param(
            {"d.csv": f"{HEAD},cost_usd\nq1,Q,a,1,-0.1\n"},
            r"d\.csv:2: cost_usd must be a non-negative number",
            id="negative cost",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_file_and_line(tmp_path: Path, files: dict[str, str], pattern: str) -> None:
    paths = [write(tmp_path / name, text) for name, text in files.items()]
    with pytest.raises(DataError, match=pattern):
        read_canonical(paths)


def test_missing_column_names_file_column_and_found_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "question_id,question,model,is_correct\nq1,Q,a,1\n")
    with pytest.raises(DataError) as info:
        read_canonical([path])
    message = str(info.value)
    assert "d.csv" in message and "'correct'" in message
    assert "columns found: question_id, question, model, is_correct" in message


@pytest.mark.parametrize("text", ["", "question_id,question,model,correct\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(DataError, match=r"d\.csv: (file is empty|no data rows)"):
        read_canonical([write(tmp_path / "d.csv", text)])


def test_empty_gzip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="file is empty"):
        read_canonical([path])
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_canonical([tmp_path / "nope.csv"])


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "data.csv"
    target.write_text("old content\n", encoding="utf-8")
    data = sample()

    def broken(self: RoutingData, chunk_rows: int = 4096) -> Iterator[str]:
        yield HEADER
        raise OSError("disk full")

    monkeypatch.setattr(RoutingData, "iter_text", broken)
    for name in ("data.csv", "data.csv.gz", "new.csv"):
        with pytest.raises(OSError, match="disk full"):
            write_canonical(data, tmp_path / name)
    assert target.read_text(encoding="utf-8") == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


def test_subset_by_mask_and_indices() -> None:
    data = sample()
    by_mask = data.subset(np.array([True, False, True]))
    assert by_mask.question_ids == ["q1", "q3"]
    assert by_mask.tasks == ["math", "chat"]
    np.testing.assert_array_equal(by_mask.labels, data.labels[[0, 2]])
    by_index = data.subset([2, 0])
    assert by_index.question_ids == ["q3", "q1"]
    assert len(data.subset([])) == 0
    with pytest.raises(DataError, match="mask has shape"):
        data.subset(np.array([True, False]))
    with pytest.raises(DataError, match="out of range"):
        data.subset([3])


def test_split_selects_rows_with_that_value() -> None:
    data = sample()
    assert data.split("train").question_ids == ["q1"]
    assert data.split("test").question_ids == ["q2"]
    with pytest.raises(DataError, match=r"no question has split 'dev'; splits found: \['test', 'train'\]"):
        data.split("dev")


def test_select_models() -> None:
    data = sample().select_models(["large"])
    assert data.models == ["large"] and data.labels.shape == (3, 1)
    with pytest.raises(DataError, match="unknown model"):
        sample().select_models(["huge"])


def test_split_by_id_is_deterministic_and_stable() -> None:
    ids = [f"q{i}" for i in range(2000)]
    data = RoutingData.from_labels(ids, [f"text {i}" for i in ids], ["m"], np.ones((2000, 1)))
    first = split_by_id(data, test_fraction=0.2, seed=0)
    assert first.splits == split_by_id(data, test_fraction=0.2, seed=0).splits
    share = first.splits.count("test") / len(ids)
    assert 0.17 < share < 0.23
    assert set(first.splits) == {"train", "test"}
    # A question keeps its side when others are removed.
    part = split_by_id(data.subset(np.arange(0, 2000, 7)), test_fraction=0.2, seed=0)
    assert part.splits == [first.splits[i] for i in range(0, 2000, 7)]
    assert first.splits[:10] == split_by_id(data.subset(np.arange(10)), 0.2, 0).splits
    assert split_by_id(data, seed=1).splits != first.splits
    assert data.splits == [None] * 2000  # the input is not modified
    assert first.split("test").splits == ["test"] * first.splits.count("test")


def test_split_by_id_pinned_values() -> None:
    """Literal expectations: the split must not change across machines, Python versions or releases."""
    ids = [f"q{i}" for i in range(12)]
    data = RoutingData.from_labels(ids, ids, ["m"], np.ones((12, 1)))
    assert [i for i, s in enumerate(split_by_id(data).splits) if s == "test"] == [7, 8]
    assert [i for i, s in enumerate(split_by_id(data, 0.5).splits) if s == "test"] == [2, 4, 5, 7, 8, 10, 11]
    with pytest.raises(DataError, match="test_fraction"):
        split_by_id(data, test_fraction=1.0)


def test_summary_counts_accuracy_and_coverage() -> None:
    summary = sample().summary()
    assert (summary.questions, summary.models, summary.known_cells) == (3, 2, 4)
    small, large = summary.per_model["small"], summary.per_model["large"]
    assert small.accuracy == pytest.approx(0.5) and small.coverage == pytest.approx(2 / 3)
    assert large.accuracy == pytest.approx(0.625) and large.known == 2
    assert summary.oracle_accuracy == pytest.approx((1.0 + 0.25 + 1.0) / 3)
    assert summary.splits == {"train": 1, "test": 1}
    assert "3 questions × 2 models" in str(summary)


def test_validation_of_the_table() -> None:
    with pytest.raises(DataError, match=r"labels must lie in \[0, 1\]"):
        RoutingData.from_labels(["a"], ["A"], ["m"], [[2.0]])
    with pytest.raises(DataError, match="question_id 'a' appears more than once"):
        RoutingData.from_labels(["a", "a"], ["A", "A"], ["m"], [[1.0], [0.0]])
    with pytest.raises(DataError, match="labels has shape"):
        RoutingData.from_labels(["a"], ["A"], ["m", "n"], [[1.0]])
