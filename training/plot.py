"""The accuracy-cost plot: the router's curve, its baselines and every single model as a point."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_report(report: dict[str, Any], path: Path, title: str = "") -> None:
    """Write a PNG of accuracy against cost per 1K requests (log scale)."""
    figure, axes = plt.subplots(figsize=(12, 6), dpi=110)
    router = report["router"]
    axes.plot(
        [p["cost_per_1k"] for p in router],
        [p["accuracy"] for p in router],
        "-o",
        ms=3,
        lw=2,
        label="Ladder router",
    )
    styles = {"knn": ("--", "tab:orange"), "random": (":", "tab:gray")}
    for name, points in report["baselines"].items():
        style, colour = styles.get(name, ("--", None))
        axes.plot(
            [p["cost_per_1k"] for p in points],
            [p["accuracy"] for p in points],
            style,
            color=colour,
            lw=1.5,
            label=f"baseline: {name}"
            + (" (router's model mix, random questions)" if name == "random" else ""),
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
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.tight_layout()
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial)
    plt.close(figure)
    os.replace(partial, path)
