"""`ladder calibrate`: the tolerance that meets a target on a labelled sample, optionally written to the pool.

Targets:
- `priciest-share=S`: the share of calls that go to the priciest model is as close to S as the sample
  allows. The priciest model is the most expensive one that the router sends at least S of the calls at
  tolerance 0 (raising the tolerance only takes calls away from expensive models);
- `cost-per-1k=C`: the smallest tolerance (the most accurate routing) whose mean cost per 1K requests
  is at most C;
- `relative-accuracy=R`: the cheapest operating point whose accuracy is at least R times the best single
  model's on the sample.
The sample is scored exactly as `ladder evaluate` scores held-out rows (`ladder.training.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml.comments import CommentedMap

from ladder.core.errors import ConfigError, DataError
from ladder.core.policy import ChoiceOptions, choose
from ladder.training.evaluate import EvaluationInputs, at_tolerance_point
from ladder.training.pool_edit import check_edit, set_key

GRID = tuple(float(t) for t in np.round(np.linspace(0.0, 0.5, 501), 4))
"""Tolerances searched: 0 to 0.5 in steps of 0.001 (routing changes in small steps on a real sample)."""


class TargetKind(StrEnum):
    PRICIEST_SHARE = "priciest-share"
    COST_PER_1K = "cost-per-1k"
    RELATIVE_ACCURACY = "relative-accuracy"


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    value: float

    @classmethod
    def parse(cls, text: str) -> Target:
        kinds = ", ".join(k.value for k in TargetKind)
        kind, sep, raw = text.partition("=")
        if not sep:
            raise DataError(f"--target {text!r}: expected KIND=VALUE with KIND one of {kinds}")
        try:
            target_kind = TargetKind(kind.strip())
        except ValueError:
            raise DataError(f"--target {text!r}: unknown kind {kind.strip()!r}; known: {kinds}") from None
        try:
            value = float(raw)
        except ValueError:
            raise DataError(f"--target {text!r}: {raw.strip()!r} is not a number") from None
        bounded = target_kind is not TargetKind.COST_PER_1K
        if not np.isfinite(value) or value < 0 or (bounded and value > 1):
            limit = "in [0, 1]" if bounded else "a non-negative number"
            raise DataError(f"--target {text!r}: the value must be {limit}")
        return cls(target_kind, value)


def priciest_model(inputs: EvaluationInputs, share: float = 0.0) -> str:
    """The most expensive model the router sends at least ``share`` of the calls at tolerance 0.

    A model it (almost) never picks, such as one that costs more than another and is less accurate, cannot
    be given a share of the calls by any tolerance; the most-picked model stands in when none qualifies.
    """
    chosen = choose(inputs.router_p, inputs.costs, ChoiceOptions(tolerance=0.0)).model
    shares = np.bincount(chosen, minlength=len(inputs.names)) / max(len(chosen), 1)
    cost = inputs.costs.mean(axis=0)
    qualifying = [j for j in range(len(inputs.names)) if shares[j] >= max(share, 1e-9)]
    if not qualifying:
        return inputs.names[int(np.argmax(shares))]
    return inputs.names[max(qualifying, key=lambda j: cost[j])]


def calibrate(inputs: EvaluationInputs, target: Target) -> dict[str, Any]:
    """The tolerance meeting ``target`` on the scored sample, and what it gives there."""
    p, y, c = inputs.router_p, inputs.labels, inputs.costs
    share = target.value if target.kind is TargetKind.PRICIEST_SHARE else 0.0
    priciest = inputs.names.index(priciest_model(inputs, share))
    accuracy = y.mean(axis=0)
    best = int(np.argmax(accuracy))
    rows = np.arange(len(y))
    shares, costs, accuracies = [], [], []
    for tolerance in GRID:
        chosen = choose(p, c, ChoiceOptions(tolerance=tolerance)).model
        shares.append(float((chosen == priciest).mean()))
        costs.append(float(c[rows, chosen].mean() * 1000))
        accuracies.append(float(y[rows, chosen].mean()))
    met = True
    if target.kind is TargetKind.PRICIEST_SHARE:
        gaps = np.abs(np.asarray(shares) - target.value)
        index = int(np.argmin(gaps))  # the first (smallest) tolerance among equally close ones
        met = bool(gaps[index] <= 0.02)
    elif target.kind is TargetKind.COST_PER_1K:
        within = [i for i, cost in enumerate(costs) if cost <= target.value + 1e-12]
        met = bool(within)
        index = within[0] if within else int(np.argmin(costs))
    else:
        goal = target.value * float(accuracy[best])
        good = [i for i, acc in enumerate(accuracies) if acc >= goal - 1e-12]
        met = bool(good)
        index = min(good, key=lambda i: (costs[i], i)) if good else int(np.argmax(accuracies))
    tolerance = GRID[index]
    return {
        "policy": "cheapest",
        "tolerance": tolerance,
        "target": {"kind": target.kind.value, "value": target.value, "met_on_sample": met},
        "on_sample": {
            "questions": inputs.questions,
            **at_tolerance_point(inputs, tolerance),
            "priciest_model": inputs.names[priciest],
            "priciest_share": shares[index],
            "best_single_model": inputs.names[best],
            "best_single_accuracy": float(accuracy[best]),
            "relative_accuracy": accuracies[index] / float(accuracy[best]) if accuracy[best] > 0 else None,
        },
    }


def held_out_check(
    inputs: EvaluationInputs, tolerance: float, priciest_name: str | None = None
) -> dict[str, Any]:
    """What ``tolerance`` gives on other rows: the same figures, for checking a calibration."""
    p, y, c = inputs.router_p, inputs.labels, inputs.costs
    priciest = inputs.names.index(priciest_name or priciest_model(inputs))
    chosen = choose(p, c, ChoiceOptions(tolerance=tolerance)).model
    best = float(y.mean(axis=0).max())
    at = at_tolerance_point(inputs, tolerance)
    return {
        **at,
        "questions": inputs.questions,
        "priciest_model": inputs.names[priciest],
        "priciest_share": float((chosen == priciest).mean()),
        "relative_accuracy": at["accuracy"] / best if best > 0 else None,
    }


def rewrite_routing(path: Path, tolerance: float) -> tuple[str, str]:
    """(old text, new text) of ``path`` with `routing.tolerance` (and `policy: cheapest`) set, comments and
    layout kept (`ladder.training.pool_edit`). The new text is checked to load as a pool; nothing is written."""

    def change(document: CommentedMap, where: Path) -> None:
        routing = document.get("routing")
        if routing is None:
            set_key(document, "routing", CommentedMap(tolerance=float(f"{tolerance:g}")), after="version")
            return
        if not isinstance(routing, CommentedMap):
            raise ConfigError(f"{where}: no routing mapping to write the tolerance into")
        if routing.get("policy", "cheapest") != "cheapest":
            set_key(routing, "policy", "cheapest")
        set_key(routing, "tolerance", float(f"{tolerance:g}"), after="policy")

    return check_edit(path, change)
