"""`ladder report`: routing shares, cost and savings over time, and drift away from a reference sample."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladder.core.atomic import partial_file
from ladder.core.checkpoint import Checkpoint
from ladder.core.errors import DataError
from ladder.core.policy import ChoiceOptions, choose
from ladder.core.pool import PoolConfig
from ladder.core.traffic_db import DecisionRow

PSI_BINS = 10
PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class Sample:
    """What drift is measured on: each request's P(correct) per model, and which model was chosen."""

    names: list[str]
    p: np.ndarray  # [requests, models]
    chosen: np.ndarray  # [requests] model index
    source: str


def window_sample(decisions: Sequence[DecisionRow], source: str) -> Sample:
    """The decisions' P(correct) vectors over the models every one of them scored."""
    if not decisions:
        raise DataError(f"{source}: no decisions to report on")
    scored = [_scored(row) for row in decisions]
    common = set(scored[0])
    for p_correct in scored:
        common &= set(p_correct)
    names = sorted(common)
    if not names:
        raise DataError(f"{source}: the decisions share no scored model")
    p = np.array([[p_correct[n] for n in names] for p_correct in scored], dtype=np.float64)
    index = {n: i for i, n in enumerate(names)}
    chosen = np.array([index.get(str(r.record.chosen_model), -1) for r in decisions], dtype=np.int64)
    return Sample(names, p, chosen, source)


def _scored(row: DecisionRow) -> dict[str, float]:
    """The P(correct) per model of one decision (a refused request has none: it is never read here)."""
    if row.record.p_correct is None:
        raise DataError(f"decision {row.request_id!r}: no P(correct): the request got no decision")
    return row.record.p_correct


def checkpoint_sample(
    checkpoint: Checkpoint, pool: PoolConfig | None, window: Sample, tolerance: float, costs: np.ndarray
) -> Sample:
    """The checkpoint's calibration sample (out-of-fold P(correct) on its training questions), routed by
    the cheapest-within-tolerance rule at the window's tolerance and expected costs."""
    reference = checkpoint.reference_p
    if reference.size == 0:
        raise DataError(
            f"checkpoint {checkpoint.directory} has no calibration sample (reference_p_correct); "
            "pass --baseline with an earlier audit log instead"
        )
    label_of = {m.name: m.checkpoint_label for m in pool.models} if pool is not None else {}
    columns = []
    for name in window.names:
        label = label_of.get(name, name)
        if label not in checkpoint.models:
            raise DataError(
                f"checkpoint {checkpoint.directory} does not score model {name!r} (label {label!r})"
            )
        columns.append(checkpoint.models.index(label))
    p = reference[:, columns].astype(np.float64)
    chosen = choose(p, costs, ChoiceOptions(tolerance=tolerance)).model
    return Sample(window.names, p, np.asarray(chosen, dtype=np.int64), f"checkpoint {checkpoint.directory}")


def typical_routing(decisions: Sequence[DecisionRow], names: Sequence[str]) -> tuple[float, np.ndarray]:
    """The window's median tolerance and median expected cost per model (to route a reference sample)."""
    tolerances = [r.record.tolerance for r in decisions if r.record.tolerance is not None]
    costs = np.array(
        [np.median([(r.record.expected_cost_usd or {}).get(n, np.nan) for r in decisions]) for n in names]
    )
    if np.isnan(costs).any():
        raise DataError("the audit records have no expected_cost_usd for every model")
    return (float(np.median(tolerances)) if tolerances else 0.0), costs


def shares(sample: Sample) -> np.ndarray:
    counts = np.bincount(sample.chosen[sample.chosen >= 0], minlength=len(sample.names)).astype(np.float64)
    return np.asarray(counts / max(1.0, float(counts.sum())), dtype=np.float64)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index over the reference's deciles (0.1: moderate shift, 0.25: large)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, PSI_BINS + 1)))
    if len(edges) < 3:
        edges = np.linspace(
            min(reference.min(), current.min()), max(reference.max(), current.max()) + 1e-9, 3
        )
    inner = edges[1:-1]
    ref = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(edges) - 1)
    cur = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(edges) - 1)
    a = np.maximum(ref / ref.sum(), PSI_FLOOR)
    b = np.maximum(cur / cur.sum(), PSI_FLOOR)
    return float(np.sum((b - a) * np.log(b / a)))


def ks(reference: np.ndarray, current: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    grid = np.sort(np.concatenate([reference, current]))
    f = np.searchsorted(np.sort(reference), grid, side="right") / len(reference)
    g = np.searchsorted(np.sort(current), grid, side="right") / len(current)
    return float(np.abs(f - g).max())


def drift(
    window: Sample, reference: Sample, share_threshold: float, psi_threshold: float, min_requests: int
) -> dict[str, Any]:
    """Total variation distance of chosen-model shares, and PSI / KS of each model's P(correct)."""
    a, b = shares(reference), shares(window)
    per_model = {}
    for j, name in enumerate(window.names):
        per_model[name] = {
            "share": float(b[j]),
            "reference_share": float(a[j]),
            "mean_p_correct": float(window.p[:, j].mean()),
            "reference_mean_p_correct": float(reference.p[:, j].mean()),
            "psi": psi(reference.p[:, j], window.p[:, j]),
            "ks": ks(reference.p[:, j], window.p[:, j]),
        }
    tvd = float(0.5 * np.abs(a - b).sum())
    max_psi = max(m["psi"] for m in per_model.values())
    reasons = []
    enough = len(window.p) >= min_requests
    if enough and tvd > share_threshold:
        reasons.append(f"chosen-model shares moved by {tvd:.3f} (total variation) > {share_threshold:g}")
    if enough and max_psi > psi_threshold:
        worst = max(per_model, key=lambda n: per_model[n]["psi"])
        reasons.append(f"P(correct) of {worst} shifted: PSI {max_psi:.3f} > {psi_threshold:g}")
    return {
        "reference": reference.source,
        "reference_requests": len(reference.p),
        "requests": len(window.p),
        "assessed": enough,
        "share_tvd": tvd,
        "max_psi": max_psi,
        "max_ks": max(m["ks"] for m in per_model.values()),
        "share_threshold": share_threshold,
        "psi_threshold": psi_threshold,
        "drifted": bool(reasons),
        "reasons": reasons if enough else [f"only {len(window.p)} requests (< {min_requests}): not assessed"],
        "per_model": per_model,
    }


def timeline(decisions: Sequence[DecisionRow], bucket: str) -> list[dict[str, Any]]:
    """Per hour or day: requests, chosen-model shares, cost, the baseline's cost and the savings."""
    width = {"hour": 13, "day": 10}[bucket]  # characters of an ISO time that name the bucket
    groups: dict[str, list[DecisionRow]] = defaultdict(list)
    for row in decisions:
        groups[row.time[:width] if row.time else "unknown"].append(row)
    out = []
    for key in sorted(groups):
        rows = groups[key]
        counts: dict[str, int] = defaultdict(int)
        for r in rows:
            counts[str(r.record.chosen_model)] += 1
        cost = sum(r.record.cost_usd or 0.0 for r in rows)
        baseline = sum(r.record.baseline_cost_usd or 0.0 for r in rows)
        out.append(
            {
                "bucket": key,
                "requests": len(rows),
                "shares": {m: c / len(rows) for m, c in sorted(counts.items())},
                "cost_usd": cost,
                "baseline_cost_usd": baseline,
                "savings_usd": baseline - cost,
                "errors": sum(1 for r in rows if r.record.error),
            }
        )
    return out


def build_report(
    decisions: Sequence[DecisionRow],
    reference: Sample,
    window: Sample,
    bucket: str,
    thresholds: Mapping[str, float],
    min_requests: int,
) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    series = timeline(decisions, bucket)
    cost = sum(b["cost_usd"] for b in series)
    baseline = sum(b["baseline_cost_usd"] for b in series)
    return {
        "requests": len(decisions),
        "first": min((r.time for r in decisions if r.time), default=None),
        "last": max((r.time for r in decisions if r.time), default=None),
        "distribution": {n: float(s) for n, s in zip(window.names, shares(window), strict=True)},
        "cost_usd": cost,
        "baseline_cost_usd": baseline,
        "savings_usd": baseline - cost,
        "savings_share": (baseline - cost) / baseline if baseline > 0 else None,
        "timeline": series,
        "drift": drift(window, reference, thresholds["share"], thresholds["psi"], min_requests),
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write the report atomically (readers see the old file or the new one)."""
    with partial_file(path) as partial:
        partial.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
