"""Print the markdown table of docs/cascade.md from `ladder evaluate` reports: NAME=report.json ..."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _share(value: float | None) -> str:
    return "never" if value is None else f"{value:.0%}"


def _cascade(report: dict[str, Any], key: str) -> str:
    found = report.get("cascades", {}).get(key)
    if found is None:
        return "no answers in the data"
    plan = found["plan"]
    held = plan["held_out"]
    best = report["best_single_cost_per_1k"]
    return (
        f"{plan['first']}→{plan['top']} ({plan['rule']}"
        + (", 2nd opinion" if plan["second_opinion"] else "")
        + f"): match at {_share(plan['held_out_cost_to_match_best_single'])}; "
        f"chosen {held['accuracy']:.3f} at {held['cost_per_1k'] / best:.0%}"
    )


def row(name: str, report: dict[str, Any]) -> str:
    best = report["best_single_cost_per_1k"]
    rec = report.get("recommended_by_objective")
    rec_text = (
        f"{rec['policy']} {rec['value']:.3g}: {rec['held_out']['accuracy']:.3f} at "
        f"{rec['held_out']['cost_per_1k'] / best:.0%}"
        if rec
        else "-"
    )
    matches = report.get("baseline_cost_to_match_best_single", {})
    utility = report.get("policies", {}).get("utility", [])
    reaching = [p["cost_per_1k"] for p in utility if p["accuracy"] >= report["best_single_accuracy"] - 1e-12]
    return (
        f"| {name} | {report['questions']:,} "
        f"| {report['best_single_model']} {report['best_single_accuracy']:.3f} "
        f"| {report['oracle_accuracy']:.3f} "
        f"| {_share(report['cost_to_match_best_single'])} "
        f"| {_share(min(reaching) / best if reaching else None)} "
        f"| {rec_text} "
        f"| {_cascade(report, 'cascade')} | {_cascade(report, 'cascade_with_router')} "
        f"| {_share(matches.get('knn'))} | {_share(matches.get('per_task'))} |"
    )


HEADER = (
    "| benchmark | held-out questions | best single | oracle | router (cheapest): cost to match best "
    "| router (utility): cost to match | recommended on training rows (objective match-best) "
    "| cascade | router + cascade | kNN: cost to match | per-task best model: cost to match |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(args: list[str]) -> None:
    print(HEADER)
    for arg in args:
        name, _, path = arg.partition("=")
        print(row(name, json.loads(Path(path).read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main(sys.argv[1:])
