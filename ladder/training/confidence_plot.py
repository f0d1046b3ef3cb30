"""The confidence-cascade plot: each plan's held-out accuracy against its share of the best model's cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_confidence(report: dict[str, Any], path: Path) -> None:
    """Write a PNG: curves for the plans, points for the single models, the goals as guides."""
    figure, axes = plt.subplots(figsize=(10, 7), dpi=110)
    ref = report["reference"]
    for name, plan in report["plans"].items():
        curve = plan["curve"]
        x = [p["cost_share"] for p in curve]
        y = [p["accuracy"] for p in curve]
        if len(curve) == 1:
            axes.plot(x, y, "ks", ms=6)
            axes.annotate(name, (x[0], y[0]), textcoords="offset points", xytext=(4, -10), fontsize=8)
        else:
            axes.plot(x, y, "-o", ms=2.5, lw=2 if name.startswith("Ladder") else 1.2, label=name)
    axes.axhline(ref["accuracy"], color="grey", ls=":", lw=1)
    axes.axvline(0.5, color="grey", ls=":", lw=1)
    axes.axvline(0.7, color="grey", ls="--", lw=0.8)
    axes.set_xscale("log")
    axes.set_xlabel(f"cost as a share of {ref['model']}'s (${ref['cost_per_1k']:.3f} per 1K questions), held-out")
    axes.set_ylabel("accuracy, held-out")
    axes.set_title(f"Cascades on answer confidences: tuned on train, measured on test ({ref['model']} dotted)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
