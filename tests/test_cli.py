"""The `ladder` command as a user meets it: decisions on the shipped default, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, ladder


def route_json(*args: str) -> dict[str, object]:
    result = ladder("route", "--json", *args, check=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_route_explains_the_decision_on_the_default_router() -> None:
    decision = route_json("Translate 'good morning' into French.")
    candidates = decision["candidates"]
    assert isinstance(candidates, list) and len(candidates) == 8
    assert decision["model"] in {c["name"] for c in candidates}
    assert all(0 < c["p_correct"] < 1 for c in candidates)
    best = max(c["p_correct"] for c in candidates)
    assert decision["threshold"] == pytest.approx(best - decision["tolerance"], abs=1e-5)
    chosen = next(c for c in candidates if c["name"] == decision["model"])
    qualifying = [c for c in candidates if c["within_threshold"]]
    assert chosen["expected_cost_usd"] == min(c["expected_cost_usd"] for c in qualifying)


def test_tolerance_zero_picks_the_most_likely_model_and_pinning_wins() -> None:
    strict = route_json("Prove that the square root of 2 is irrational.", "--tolerance", "0")
    top = max(strict["candidates"], key=lambda c: c["p_correct"])  # type: ignore[arg-type, index]
    assert strict["model"] == top["name"]  # type: ignore[index]
    pinned = route_json("Prove that the square root of 2 is irrational.", "--model", "phi-3-mini")
    assert pinned["model"] == "phi-3-mini"


def test_japanese_and_chinese_prompts_route() -> None:
    for prompt in ("東京から大阪まで新幹線で何時間かかりますか？", "请解释一下量子纠缠是什么。"):
        assert route_json(prompt)["routed_tokens"] < 40  # clean subwords, not a byte soup


def test_a_100000_character_prompt_is_routed_on_its_end() -> None:
    decision = route_json("background " * 9000 + "So what is 2 + 2?")
    assert decision["truncated"] is True and decision["routed_tokens"] == 512


def test_empty_prompt() -> None:
    assert_clean_error(ladder("route", "   "), "error:", "empty")


def test_invalid_utf8_prompt() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ladder.cli", "route", b"caf\xe9 au lait"], cwd=REPO, capture_output=True, text=True
    )
    assert_clean_error(result, "not valid UTF-8")


def test_pool_with_a_typo(tmp_path: Path) -> None:
    pool = (REPO / "ladder" / "defaults" / "pool.yaml").read_text().replace("  tolerance:", "  tolerence:")
    (tmp_path / "pool.yaml").write_text(pool)
    assert_clean_error(
        ladder("route", "hi", "--pool", str(tmp_path / "pool.yaml")), "routing.tolerence: unknown key"
    )


def test_checkpoint_for_a_different_pool(tmp_path: Path) -> None:
    pool = (REPO / "ladder" / "defaults" / "pool.yaml").read_text()
    pool = pool.replace("label: jamba-1.5-large", "label: gpt-4o")  # the shipped checkpoint is the default
    (tmp_path / "pool.yaml").write_text(pool)
    assert_clean_error(
        ladder("route", "hi", "--pool", str(tmp_path / "pool.yaml")), "['gpt-4o'], which it cannot score"
    )


def test_data_file_missing_a_column(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("question_id,question,correct\nq1,What?,1\n")
    assert_clean_error(
        ladder("train", "--data", str(tmp_path / "data.csv"), "--out", str(tmp_path / "c")), "model"
    )
    assert not (tmp_path / "c").exists()


def test_every_benchmark_is_a_command() -> None:
    from ladder.cli.main import bench_app

    assert {c.name for c in bench_app.registered_commands} == {
        "route", "gateway", "triton", "gpu", "chaos", "overload", "router-cost"
    }
    for name in ("chaos", "overload"):  # their own options reach the run, which answers --help with its usage
        done = ladder("bench", name, "--help")
        assert done.returncode == 0 and f"usage: ladder bench {name}" in done.stdout, done.stderr


def test_no_test_or_installed_module_imports_a_research_script() -> None:
    import ast

    for path in [*(REPO / "ladder").rglob("*.py"), *(REPO / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in {"scripts", "research", "local_loop"} for n in names), path
