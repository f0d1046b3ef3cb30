"""The calibrated cascade's step: from what is known so far, keep the answer in hand or ask which model next.

One rule for both sides: the gateway calls `step` for one request (arrays of one row), offline evaluation
calls `next_asks` over arrays of recorded answers, so a plan is served exactly as it was costed. Each model
j not yet asked is worth ``q[j] - cost_weight * cost[j]`` (its estimated P(correct) now, less its expected
price); the best is asked when there is no answer yet, or when it beats the answer in hand's calibrated
P(correct) by more than ``margin``. With no answer yet, this is the prefill router at that cost weight:
it may start on a cheap rung or go straight to a strong model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

KEEP = -1
"""`next_asks`'s value for "keep the answer in hand"."""


@dataclass(frozen=True)
class RungSettings:
    """One operating point of a calibrated cascade: the price of a dollar in P(correct), the gain an
    escalation must clear, and the most models asked per request."""

    cost_weight: float
    margin: float = 0.0
    max_stages: int = 3


def next_asks(
    p_keep: npt.NDArray[np.float64],
    q: npt.NDArray[np.float64],
    cost: npt.NDArray[np.float64],
    asked: npt.NDArray[np.bool_],
    settings: RungSettings,
) -> npt.NDArray[np.int64]:
    """Per row, the model to ask next, or `KEEP`.

    ``p_keep`` [rows]: calibrated P(correct) of the answer in hand (NaN: no answer yet); ``q``, ``cost``,
    ``asked`` [rows, models]: each model's P(correct) if asked now, its expected cost in USD, and whether
    it was asked already. A row that has asked ``max_stages`` models keeps.
    """
    value = np.where(asked, -np.inf, q - settings.cost_weight * cost)
    best = np.argmax(value, axis=1)
    best_value = value[np.arange(len(best)), best]
    fresh = np.isnan(p_keep)
    better = best_value > np.where(fresh, -np.inf, p_keep + settings.margin)
    room = asked.sum(axis=1) < settings.max_stages
    return np.where(better & room & np.isfinite(best_value), best, KEEP).astype(np.int64)


def worth_reading(
    p_prefill: npt.NDArray[np.float64],
    read_cost: npt.NDArray[np.float64],
    could_follow: npt.NDArray[np.bool_],
    settings: RungSettings,
) -> npt.NDArray[np.bool_]:
    """Per row, whether to read the answer's confidence (paying ``read_cost``, a self-check call; 0 when
    the confidence came with the answer): only where another model could follow, and where the price of
    reading is below the uncertainty it resolves, ``p (1 - p)`` of the router's P(correct) for the model
    that answered."""
    uncertainty = p_prefill * (1.0 - p_prefill)
    return could_follow & ((read_cost <= 0.0) | (settings.cost_weight * read_cost < uncertainty))


def answer_to_return(p_held: npt.NDArray[np.float64], asked: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Per row, the answer to return once the cascade keeps: of the models asked, the one whose answer has
    the highest calibrated P(correct) (``p_held`` [rows, models]; entries of models not asked are ignored),
    not necessarily the last one asked."""
    best = np.argmax(np.where(asked, np.nan_to_num(p_held, nan=-1.0), -np.inf), axis=1)
    return np.asarray(best, dtype=np.int64)


@dataclass(frozen=True)
class Step:
    """One request's next step, and why."""

    action: Literal["ask", "keep"]
    model: int | None
    reason: str


def step(p_keep: float | None, q: list[float], cost: list[float], asked: list[bool], settings: RungSettings) -> Step:
    """`next_asks` for one request, with the reason in words (what the gateway logs)."""
    choice = int(
        next_asks(
            np.array([np.nan if p_keep is None else p_keep]),
            np.array([q], dtype=np.float64),
            np.array([cost], dtype=np.float64),
            np.array([asked], dtype=np.bool_),
            settings,
        )[0]
    )
    if choice == KEEP:
        if sum(asked) >= settings.max_stages:
            return Step("keep", None, f"{settings.max_stages} models asked: the last answer is kept")
        return Step("keep", None, f"P(correct) {p_keep:.3f} + margin {settings.margin:g} beats every model left")
    value = q[choice] - settings.cost_weight * cost[choice]
    if p_keep is None:
        return Step("ask", choice, f"first rung: P {q[choice]:.3f} less cost weight x ${cost[choice]:.6f} is best")
    return Step(
        "ask",
        choice,
        f"P(correct) {p_keep:.3f} + margin {settings.margin:g} < {value:.3f} (P {q[choice]:.3f} less its cost)",
    )
