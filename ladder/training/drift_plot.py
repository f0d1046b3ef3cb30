"""The `ladder report` PNG: shares and cost over time, and the window against its reference sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from ladder.core.atomic import partial_file

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_drift(report: dict[str, Any], path: Path) -> None:
    """A 2x2 PNG: shares and cost per bucket; shares and mean P(correct) against the reference."""
    series = report["timeline"]
    drift = report["drift"]
    names = list(drift["per_model"])
    buckets = [b["bucket"] for b in series]
    x = np.arange(len(buckets))
    figure, axes = plt.subplots(2, 2, figsize=(14, 9), dpi=100)
    bottom = np.zeros(len(buckets))
    for name in names:
        values = np.array([b["shares"].get(name, 0.0) for b in series])
        axes[0, 0].bar(x, values, bottom=bottom, label=name)
        bottom += values
    axes[0, 0].set(title="Chosen model share per period", ylabel="share", ylim=(0, 1.02))
    axes[0, 0].set_xticks(x, buckets, rotation=30, ha="right", fontsize=8)
    axes[0, 0].legend(fontsize=7)

    axes[0, 1].plot(x, [b["baseline_cost_usd"] for b in series], "-o", label="baseline model for every call")
    axes[0, 1].plot(x, [b["cost_usd"] for b in series], "-o", label="routed")
    axes[0, 1].plot(x, np.cumsum([b["savings_usd"] for b in series]), "--", label="cumulative savings")
    axes[0, 1].set(title="Cost per period (USD)", ylabel="USD")
    axes[0, 1].set_xticks(x, buckets, rotation=30, ha="right", fontsize=8)
    axes[0, 1].legend(fontsize=8)

    width = 0.4
    m = np.arange(len(names))
    per = drift["per_model"]
    axes[1, 0].bar(m - width / 2, [per[n]["reference_share"] for n in names], width, label="reference")
    axes[1, 0].bar(m + width / 2, [per[n]["share"] for n in names], width, label="this window")
    axes[1, 0].set(title=f"Chosen model share: total variation {drift['share_tvd']:.3f}", ylabel="share")
    axes[1, 0].set_xticks(m, names, rotation=30, ha="right", fontsize=8)
    axes[1, 0].legend(fontsize=8)

    axes[1, 1].bar(
        m - width / 2, [per[n]["reference_mean_p_correct"] for n in names], width, label="reference"
    )
    axes[1, 1].bar(m + width / 2, [per[n]["mean_p_correct"] for n in names], width, label="this window")
    for j, n in enumerate(names):
        axes[1, 1].annotate(f"PSI {per[n]['psi']:.2f}", (j, 1.0), ha="center", fontsize=7)
    axes[1, 1].set(title="Mean P(correct) per model", ylabel="P(correct)", ylim=(0, 1.08))
    axes[1, 1].set_xticks(m, names, rotation=30, ha="right", fontsize=8)
    axes[1, 1].legend(fontsize=8, loc="lower right")

    verdict = "DRIFT: " + "; ".join(drift["reasons"]) if drift["drifted"] else "no drift past the thresholds"
    figure.suptitle(
        f"{report['requests']} requests, {report['first']} to {report['last']}\n{verdict}", fontsize=10
    )
    figure.tight_layout()
    with partial_file(path) as partial:
        figure.savefig(partial)
    plt.close(figure)
