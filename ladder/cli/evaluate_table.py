"""`ladder evaluate` on the console: a per-model table (accuracy, AUC, cost) and the verdicts, at 80 columns."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def model_table(report: dict[str, Any]) -> Table:
    """One row per model, then the router at tolerance 0 and its recommended point, then the oracle."""
    table = Table(title=f"Held out: {report['questions']} questions")
    names = list(report["per_model"])
    width = max([len("model"), len("router (recommended)"), *map(len, names)])
    table.add_column("model", no_wrap=True, min_width=width)
    for column in ("accuracy", "AUC", "ECE", "$ per 1K"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, row in report["per_model"].items():
        best = " *" if name == report["best_single_model"] else ""
        table.add_row(
            name + best,
            f"{row['accuracy']:.3f}",
            _number(row["auc"], ".3f"),
            _number(row["ece"], ".3f"),
            f"{row['cost_per_1k']:.4f}",
        )
    router = report["router"][0]
    table.add_row("router (tolerance 0)", f"{router['accuracy']:.3f}", "", "", f"{router['cost_per_1k']:.4f}")
    rec = report.get("recommended")
    if rec is not None:
        table.add_row("router (recommended)", f"{rec['accuracy']:.3f}", "", "", f"{rec['cost_per_1k']:.4f}")
    table.add_row("oracle", f"{report['oracle_accuracy']:.3f}", "", "", f"{report['oracle_cost_per_1k']:.4f}")
    table.caption = "* best single model. AUC: how well the router ranks that model's right answers."
    return table


def report_console(report: dict[str, Any], width: int = 80) -> str:
    """The table and the verdict lines as plain text (what `ladder evaluate` prints on stdout)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(model_table(report))
    for line in report["verdict"]:
        console.print(line, highlight=False, markup=False)
    return console.export_text()
