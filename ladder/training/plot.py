"""The accuracy-cost plot: the router's curve, its baselines and every single model as a point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from ladder.core.atomic import partial_file

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_report(
    report: dict[str, Any], path: Path, title: str = "", router_label: str = "Ladder router"
) -> None:
    """Write a PNG of accuracy against cost per 1K requests (log scale)."""
    figure, axes = plt.subplots(figsize=(10, 8), dpi=110)
    router = report["router"]
    axes.plot(
        [p["cost_per_1k"] for p in router],
        [p["accuracy"] for p in router],
        "-o",
        ms=3,
        lw=2,
        label=router_label,
    )
    utility = report.get("policies", {}).get("utility")
    if utility:
        axes.plot(
            [p["cost_per_1k"] for p in utility],
            [p["accuracy"] for p in utility],
            "-",
            color="tab:cyan",
            lw=1.5,
            label=f"{router_label}, utility policy (P - w x cost)",
        )
    for key, colour, label in (
        ("cascade", "tab:purple", "cascade"),
        ("cascade_with_router", "tab:brown", "router + cascade"),
        ("cascade_served", "tab:pink", "servable cascade"),
    ):
        found = report.get("cascades", {}).get(key)
        if found and not (key == "cascade_served" and _same_plan(found, report["cascades"])):
            plan = found["plan"]
            points = sorted(found["points"], key=lambda p: p["cost_per_1k"])
            axes.plot(
                [p["cost_per_1k"] for p in points],
                [p["accuracy"] for p in points],
                "-" if len(points) > 1 else "s",
                color=colour,
                lw=1.5,
                label=f"{label}: {plan['first']} -> {plan['top']} ({plan['rule']}"
                + (f", {plan['second_opinion']}" if plan.get("second_opinion") else "")
                + ")",
            )
    styles: dict[str, tuple[str, str | None]] = {
        "knn": ("--", "tab:orange"),
        "random": (":", "tab:gray"),
        "per_task": ("D", "tab:olive"),  # discrete points: one model per task
    }
    for name, points in report["baselines"].items():
        style, line_colour = styles.get(name, ("--", None))
        axes.plot(
            [p["cost_per_1k"] for p in points],
            [p["accuracy"] for p in points],
            style,
            color=line_colour,
            lw=1.5,
            label=f"baseline: {name}"
            + (" (router's model mix, random questions)" if name == "random" else "")
            + (" (best model per task, told the task)" if name == "per_task" else ""),
        )
    for name, stats in report["per_model"].items():
        axes.scatter(stats["cost_per_1k"], stats["accuracy"], color="black", s=18, zorder=3)
        axes.annotate(
            name,
            (stats["cost_per_1k"], stats["accuracy"]),
            fontsize=7,
            xytext=(4, 2),
            textcoords="offset points",
        )
    axes.axhline(report["oracle_accuracy"], color="tab:green", lw=1, ls="-.", label="oracle")
    axes.axhline(report["best_single_accuracy"], color="tab:red", lw=1, ls=":", label="best single model")
    if "recommended" in report:
        rec = report["recommended"]
        axes.scatter(
            rec["cost_per_1k"],
            rec["accuracy"],
            marker="*",
            s=180,
            color="tab:blue",
            zorder=4,
            label=f"recommended (tolerance {rec['tolerance']:g}, chosen on training data)",
        )
    axes.set_xscale("log")
    axes.set_xlabel("cost per 1,000 requests (USD, log scale)")
    axes.set_ylabel("accuracy")
    axes.set_title(title or "Accuracy vs cost on held-out data")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, borderaxespad=0)
    figure.tight_layout()
    with partial_file(path) as partial:
        figure.savefig(partial)
    plt.close(figure)


def _same_plan(served: dict[str, Any], cascades: dict[str, Any]) -> bool:
    """Whether the servable cascade is already drawn as one of the other two."""
    return any(cascades.get(k, {}).get("plan") == served["plan"] for k in ("cascade", "cascade_with_router"))
