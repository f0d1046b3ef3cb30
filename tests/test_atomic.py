"""Atomic file replacement: the old file stays whole and no partial is left when writing fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladder.core.atomic import partial_file


def test_a_finished_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    with partial_file(target) as partial:
        assert partial.parent == tmp_path and partial.suffix == ".json" and partial != target
        partial.write_text("new", encoding="utf-8")
        assert target.read_text(encoding="utf-8") == "old"
    assert target.read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failure_mid_write_keeps_the_old_file_and_removes_the_partial(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk full"), partial_file(target) as partial:
        partial.write_text("half of the ne", encoding="utf-8")
        raise RuntimeError("disk full")
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_without_commit_the_partial_is_written_then_dropped(tmp_path: Path) -> None:
    target = tmp_path / "pool.yaml"
    target.write_text("old", encoding="utf-8")
    with partial_file(target, commit=False) as partial:
        partial.write_text("checked", encoding="utf-8")
        assert partial.read_text(encoding="utf-8") == "checked"
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.yaml"]


def test_missing_folders_are_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    with partial_file(target) as partial:
        partial.write_text("x", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "x"
