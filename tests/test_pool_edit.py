"""The one pool-file editor (`calibrate --write`, `latency --write`): comments and layout kept."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
from ruamel.yaml.comments import CommentedMap

from ladder.core.errors import ConfigError
from ladder.core.latency import LatencyProfile
from ladder.core.pool import load_pool
from ladder.training.latency_profiles import MeasuredLatency, write_pool_latency
from ladder.training.pool_edit import edit_pool, render_edit, rewrite_cascade
from tests.support import REPO


def added_and_removed(old: str, new: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(old.splitlines(), new.splitlines()))
    return [d[2:] for d in diff if d.startswith("+ ")], [d[2:] for d in diff if d.startswith("- ")]


@pytest.mark.parametrize("name", ["default.yaml", "routellm.yaml"])
def test_an_edit_that_changes_nothing_gives_the_file_back_byte_for_byte(tmp_path: Path, name: str) -> None:
    pool = tmp_path / name
    shutil.copyfile(REPO / "pools" / name, pool)
    before = pool.stat().st_mtime_ns
    old, new = edit_pool(pool, lambda document, path: None)
    assert new == old == (REPO / "pools" / name).read_text(encoding="utf-8")
    assert pool.stat().st_mtime_ns == before  # unchanged text: not rewritten


def test_latency_entries_land_in_their_model_and_leave_every_comment_where_it_was(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    text = (REPO / "pools" / "default.yaml").read_text(encoding="utf-8")
    text = text.replace("  - name: phi-3-mini\n", "  # on-prem, in the cluster\n  - name: phi-3-mini\n")
    text = text.replace("  - name: llama-3.1-8b\n", "  - name: llama-3.1-8b  # Together\n")
    text = text.replace(
        "    capabilities: [text]\n    locality: on-prem\n",
        "    capabilities: [text]\n    locality: on-prem\n    latency:   # measured by hand\n"
        "      ttft_ms: 900  # cold\n      tokens_per_s: 20\n",
    )
    pool.write_text(text, encoding="utf-8")
    measured = [
        MeasuredLatency("gemini-1.5-flash", LatencyProfile(0.25, 150.0), 40, 40),
        MeasuredLatency("phi-3-mini", LatencyProfile(0.1, 60.5), 40, 40),
    ]
    assert write_pool_latency(pool, measured) == ["gemini-1.5-flash", "phi-3-mini"]
    new = pool.read_text(encoding="utf-8")
    added, removed = added_and_removed(text, new)
    assert added == [
        "    latency:",
        "      ttft_ms: 250.0",
        "      tokens_per_s: 150.0",
        "      ttft_ms: 100.0 # cold",  # the comment keeps its column while there is room
        "      tokens_per_s: 60.5",
    ]
    assert removed == ["      ttft_ms: 900  # cold", "      tokens_per_s: 20"]
    assert "    locality: cloud\n    latency:\n" in new  # after the model's last key, at its indentation
    assert "      tokens_per_s: 150.0\n  # on-prem, in the cluster\n  - name: phi-3-mini\n" in new
    assert "    latency:   # measured by hand\n" in new
    models = {m.name: m.latency for m in load_pool(pool).models}
    assert models["phi-3-mini"] is not None and models["phi-3-mini"].ttft_ms == 100.0


def test_an_edit_that_breaks_the_pool_is_refused_and_the_file_is_left_alone(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    shutil.copyfile(REPO / "pools" / "default.yaml", pool)
    original = pool.read_text(encoding="utf-8")

    def typo(document: CommentedMap, path: Path) -> None:
        document["routing"]["tolerence"] = 0.1

    with pytest.raises(ConfigError, match=rf"^{pool}:\d+: routing\.tolerence: unknown key"):
        edit_pool(pool, typo)
    assert pool.read_text(encoding="utf-8") == original
    assert [p.name for p in tmp_path.iterdir()] == ["pool.yaml"]  # no partial file left


def test_a_file_that_is_not_yaml_is_named_with_its_line(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    pool.write_text("version: 1\nrouting: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{pool}:\d+: "):
        render_edit(pool, lambda document, path: None)


def test_a_written_pool_keeps_its_permissions(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    shutil.copyfile(REPO / "pools" / "default.yaml", pool)
    pool.chmod(0o644)

    def retune(document: CommentedMap, path: Path) -> None:
        document["routing"]["tolerance"] = 0.2

    old, new = edit_pool(pool, retune)
    assert new != old and pool.read_text(encoding="utf-8") == new
    assert pool.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_a_written_cascade_replaces_the_whole_block_and_nothing_else(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    text = (REPO / "pools" / "default.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "  max_prompt_tokens: 512\n",
        "  max_prompt_tokens: 512\n  cascade:  # hand-tuned\n    agreement: true\n    min_gain: 0.1\n",
    )
    pool.write_text(text, encoding="utf-8")
    settings = {
        "first": "router", "first_tolerance": 0.2, "unsure_gap": [-1.0, -0.0315], "second_opinion":
        "gemini-1.5-flash", "escalate_to": "gemini-1.5-pro", "max_stages": 2, "router_accept_p": 1.0,
        "logprobs": False,
    }  # fmt: skip
    old, new = rewrite_cascade(pool, settings)
    assert old == text and pool.read_text(encoding="utf-8") == text  # nothing written yet
    added, removed = added_and_removed(old, new)
    assert removed == ["    agreement: true", "    min_gain: 0.1"]  # the key and its comment stay
    assert len(added) == len(settings) and all(line.startswith("    ") for line in added)
    pool.write_text(new, encoding="utf-8")
    cascade = load_pool(pool).routing.cascade
    assert not cascade.agreement and cascade.min_gain == 0.0  # keys the plan did not cost are not kept
    assert cascade.escalate_to == "gemini-1.5-pro" and cascade.unsure_gap == (-1.0, -0.0315)


def test_a_cascade_naming_a_model_outside_the_pool_is_refused_before_writing(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    shutil.copyfile(REPO / "pools" / "default.yaml", pool)
    with pytest.raises(ConfigError, match="escalate_to 'gpt-9' is not a model of this pool"):
        rewrite_cascade(pool, {"unsure_gap": [-0.5, -0.1], "escalate_to": "gpt-9"})
