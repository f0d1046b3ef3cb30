"""The router's own cost: its arithmetic, `ladder report` beside the savings, and a real measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder.core.router_cost import DEFAULT_CPU_S_PER_1K, RouterCost
from tests.support import ladder
from tests.test_cli import assert_clean_error

REQUESTS = 40
COST, BASELINE = 0.0004, 0.0030  # per request: what was paid, and what the priciest model would have cost


def test_cost_per_decision_is_cpu_time_at_a_vcpus_share_of_the_price() -> None:
    cost = RouterCost(cpu_s_per_1k=36.0, instance_usd_per_hour=0.2, instance_vcpus=4)
    assert cost.usd_per_1k == pytest.approx(36.0 * 0.2 / 4 / 3600)  # $0.0005 per 1,000 decisions
    summary = cost.summary(requests=2000, savings_usd=0.01)
    assert summary["cpu_s"] == pytest.approx(72.0) and summary["cost_usd"] == pytest.approx(0.001)
    assert summary["net_savings_usd"] == pytest.approx(0.009) and summary["savings_over_cost"] == pytest.approx(10)
    assert RouterCost(0.0).summary(5, 1.0)["savings_over_cost"] is None  # nothing spent: no ratio
    for bad in ({"cpu_s_per_1k": -1.0}, {"cpu_s_per_1k": 1.0, "instance_vcpus": 0.0}):
        with pytest.raises(ValueError, match="router cost"):
            RouterCost(**bad)  # type: ignore[arg-type]


def audit_log(path: Path) -> Path:
    names = ["small", "large"]
    lines = [
        {
            "time": f"2026-01-01T{i % 24:02d}:00:00+00:00",
            "request_id": f"r{i}",
            "endpoint": "chat",
            "chosen_model": names[i % 2],
            "answered_model": names[i % 2],
            "tolerance": 0.05,
            "p_correct": {"small": 0.6 + (i % 5) / 50, "large": 0.9},
            "expected_cost_usd": {"small": 0.0001, "large": BASELINE},
            "cost_usd": COST,
            "baseline_cost_usd": BASELINE,
        }
        for i in range(REQUESTS)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_report_puts_the_routers_cost_beside_the_savings(tmp_path: Path) -> None:
    audit, out = audit_log(tmp_path / "audit.jsonl"), tmp_path / "report.json"
    args = ("report", "--audit", str(audit), "--baseline", str(audit), "--json", str(out), "--min-requests", "10")
    result = ladder(*args, "--router-cpu-s-per-1k", "90", "--instance-usd-per-hour", "0.4", "--instance-vcpus", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    router = report["router"]
    saved = REQUESTS * (BASELINE - COST)
    assert report["savings_usd"] == pytest.approx(saved)
    assert router["cost_usd"] == pytest.approx(REQUESTS * 90 / 1000 * 0.4 / 4 / 3600)
    assert router["net_savings_usd"] == pytest.approx(saved - router["cost_usd"])
    assert router["cpu_s"] == pytest.approx(REQUESTS * 0.09) and router["source"] == "--router-cpu-s-per-1k"
    assert "the router itself: 90.0 CPU-s per 1,000 decisions" in result.stdout
    # without a figure: the shipped router's, at the default instance price
    assert ladder(*args).returncode == 0
    default = json.loads(out.read_text(encoding="utf-8"))["router"]
    assert default["cpu_s_per_1k"] == DEFAULT_CPU_S_PER_1K and default["usd_per_1k"] > 0
    both = ladder(*args, "--router-cpu-s-per-1k", "1", "--measure-router")
    assert_clean_error(both, "--router-cpu-s-per-1k or --measure-router, not both")


def test_bench_router_cost_measures_the_shipped_router() -> None:
    result = ladder("bench", "router-cost", "--decisions", "10", "--instance-usd-per-hour", "0.36", check=True)
    figures = json.loads(result.stdout)
    per_length = figures["cpu_s_per_1k"]
    assert set(per_length) == {"alternating", *(k for k in per_length if k.endswith("_tokens"))}
    assert all(v > 0 for v in per_length.values())
    # the CPU figure is printed to 3 decimals; the price is worked out from the unrounded one
    assert figures["usd_per_1k"] == pytest.approx(per_length["alternating"] * 0.36 / 2 / 3600, rel=1e-4)
