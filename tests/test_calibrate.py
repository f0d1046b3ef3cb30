"""`ladder calibrate`: a tolerance fitted on a sample meets its target elsewhere; --write keeps comments."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from ladder.core.errors import ConfigError, DataError
from ladder.core.pool import load_pool
from ladder.training.calibrate import Target, TargetKind, calibrate, held_out_check, rewrite_routing
from ladder.training.dataset import split_by_id, write_canonical
from ladder.training.evaluate import EvaluationInputs
from ladder.training.importers import import_data
from tests.support import REPO, ladder, shared_data


def synthetic(n: int, seed: int) -> EvaluationInputs:
    """Three models on a price ladder; P(correct) informative but noisy; labels drawn from it."""
    rng = np.random.default_rng(seed)
    skill = rng.normal(size=(n, 1))
    base = np.array([-0.6, 0.0, 0.5])
    p = 1 / (1 + np.exp(-(base + skill + 0.6 * rng.normal(size=(n, 3)))))
    labels = (rng.random((n, 3)) < p).astype(np.float64)
    costs = np.tile([0.0001, 0.0004, 0.002], (n, 1)) * rng.uniform(0.5, 1.5, size=(n, 1))
    return EvaluationInputs(
        names=["small", "medium", "large"],
        labels=labels,
        costs=costs,
        router_p=p.astype(np.float32),
        knn_p=None,
        questions=n,
        dropped_incomplete=0,
        overlap_with_training=None,
    )


def test_a_share_target_met_on_a_sample_holds_on_other_rows() -> None:
    result = calibrate(synthetic(1500, 0), Target.parse("priciest-share=0.3"))
    assert result["policy"] == "cheapest" and result["target"]["met_on_sample"]
    assert result["on_sample"]["priciest_model"] == "large"
    assert result["on_sample"]["priciest_share"] == pytest.approx(0.3, abs=0.02)
    check = held_out_check(synthetic(1500, 1), result["tolerance"])
    assert 0.27 <= check["priciest_share"] <= 0.33


def test_a_cost_target_takes_the_most_accurate_tolerance_within_it() -> None:
    sample = synthetic(1500, 0)
    at_zero = held_out_check(sample, 0.0)["cost_per_1k"]
    goal = 0.6 * at_zero
    result = calibrate(sample, Target(TargetKind.COST_PER_1K, goal))
    assert result["on_sample"]["cost_per_1k"] <= goal
    assert held_out_check(sample, max(result["tolerance"] - 0.001, 0.0))["cost_per_1k"] > goal
    check = held_out_check(synthetic(1500, 1), result["tolerance"])
    assert check["cost_per_1k"] == pytest.approx(goal, rel=0.1)


def test_a_relative_accuracy_target_is_the_cheapest_point_reaching_it() -> None:
    sample = synthetic(1500, 0)
    result = calibrate(sample, Target.parse("relative-accuracy=0.95"))
    on = result["on_sample"]
    assert on["accuracy"] >= 0.95 * on["best_single_accuracy"] - 1e-9
    assert on["cost_per_1k"] < held_out_check(sample, 0.0)["cost_per_1k"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("priciest-share", "expected KIND=VALUE"),
        ("priciest_share=0.3", "unknown kind 'priciest_share'"),
        ("cost-per-1k=cheap", "'cheap' is not a number"),
        ("relative-accuracy=1.5", "must be in [0, 1]"),
        ("cost-per-1k=-1", "must be a non-negative number"),
    ],
)
def test_bad_targets(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Target.parse(text)


def test_write_changes_one_line_and_keeps_every_comment(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    shutil.copyfile(REPO / "pools" / "default.yaml", pool)
    old, new = rewrite_routing(pool, 0.07)
    changed = [(a, b) for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) == 1
    assert (
        changed[0][1].startswith("  tolerance: 0.07 ") and "# the checkpoint's recommended" in changed[0][1]
    )
    pool.write_text(new, encoding="utf-8")
    assert load_pool(pool).routing.tolerance == 0.07


def test_write_adds_a_missing_key_and_switches_the_policy(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    text = (REPO / "pools" / "default.yaml").read_text(encoding="utf-8")
    text = text.replace("  policy: cheapest\n", "  policy: utility   # trade P for price\n")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("  tolerance:")) + "\n"
    pool.write_text(text, encoding="utf-8")
    _, new = rewrite_routing(pool, 0.12)
    assert re.search(r"\n  policy: cheapest +# trade P for price\n  tolerance: 0\.12\n  encoder:", new)
    pool.write_text(new, encoding="utf-8")
    routing = load_pool(pool).routing
    assert routing.tolerance == 0.12 and routing.policy.value == "cheapest"


def test_write_edits_a_flow_mapping_in_its_own_style(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    text = (REPO / "pools" / "default.yaml").read_text(encoding="utf-8")
    start, end = text.index("routing:"), text.index("models:")
    pool.write_text(
        text[:start] + "routing: {policy: utility, tolerance: 0.05}  # set by hand\n" + text[end:]
    )
    old, new = rewrite_routing(pool, 0.1)
    assert new == old.replace("{policy: utility, tolerance: 0.05}", "{policy: cheapest, tolerance: 0.1}")
    assert pool.read_text() == old  # nothing written yet


def test_write_adds_routing_to_a_pool_without_one_and_keeps_the_comments_in_place(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    text = (REPO / "pools" / "routellm.yaml").read_text(encoding="utf-8")
    start, end = text.index("routing:"), text.index("models:")
    pool.write_text(text[:start] + "\n# the models, cheapest first\n" + text[end:])
    old, new = rewrite_routing(pool, 0.2)
    assert new == old.replace("version: 1\n", "version: 1\nrouting:\n  tolerance: 0.2\n")


def test_write_refuses_a_result_that_is_not_a_pool_and_names_the_file(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    text = (REPO / "pools" / "default.yaml").read_text(encoding="utf-8")
    pool.write_text(text.replace("  policy: cheapest\n", "  policy: cheapest\n  tolerence: 0.1\n"))
    with pytest.raises(ConfigError, match=r"^.*/pool\.yaml:\d+: routing\.tolerence: unknown key"):
        rewrite_routing(pool, 0.1)
    pool.write_text(text.replace("  policy: cheapest\n", "  policy: cheapest\n  policy: utility\n"))
    with pytest.raises(ConfigError, match=r"pool\.yaml:\d+: found duplicate key"):
        rewrite_routing(pool, 0.1)
    assert not [p for p in tmp_path.iterdir() if p.name != "pool.yaml"]  # no check file left behind


def test_calibrate_cli_on_the_default_router_writes_the_pool(tmp_path: Path) -> None:
    data = split_by_id(import_data("mmlu-pro", shared_data() / "mmlu_pro"), 0.2, seed=0).split("test")
    write_canonical(data.subset(np.arange(0, 2000, 10)), tmp_path / "sample.csv")
    pool = tmp_path / "pool.yaml"
    shutil.copyfile(REPO / "pools" / "default.yaml", pool)
    comments = [line for line in pool.read_text().splitlines() if line.lstrip().startswith("#")]
    result = ladder(
        "calibrate",
        "--checkpoint",
        str(REPO / "checkpoints" / "default"),
        "--data",
        str(tmp_path / "sample.csv"),
        "--pool",
        str(pool),
        "--target",
        "priciest-share=0.3",
        "--write",
        "--json",
        str(tmp_path / "cal.json"),
    )
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "cal.json").read_text())
    assert out["policy"] == "cheapest" and out["on_sample"]["priciest_model"] == "gemini-1.5-pro"
    assert out["on_sample"]["priciest_share"] == pytest.approx(0.3, abs=0.03)
    shipped = load_pool(REPO / "pools" / "default.yaml").routing.tolerance
    assert f"-  tolerance: {shipped:g}" in result.stderr
    assert f"+  tolerance: {out['tolerance']:g}" in result.stderr
    assert load_pool(pool).routing.tolerance == pytest.approx(out["tolerance"])
    assert [line for line in pool.read_text().splitlines() if line.lstrip().startswith("#")] == comments
