"""The cascade's step: from what is known of an answer, keep it, ask a second opinion, or escalate.

One rule for both sides: the gateway's cascade calls `judge` for one answer (arrays of one row, with the
reason in words), offline evaluation calls `step` over arrays of recorded answers and threshold settings, so
a plan is served exactly as it was costed. Where it escalates to is the caller's rung (`next_rung`,
`escalation_target` in `ladder.core.cascade`); ``last`` says there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from ladder.core.cascade import CascadeConfig, Signals


class Action(IntEnum):
    KEEP = 0
    ASK = 1  # a second opinion, then step again
    ESCALATE = 2


class Why(IntEnum):
    ABOVE_BAND = 0  # keep score at or above the band's upper edge: kept unread
    BELOW_BAND = 1  # below its lower edge: escalated unread
    UNSURE = 2  # inside the band, no second opinion yet: ask one
    ROUTER_SURE = 3  # the router's P(correct) for the answering model clears router_accept_p
    SIGNALS_PASS = 4  # every answer signal available passes
    SIGNALS_FAIL = 5  # a signal fails, or none is available
    LAST_RUNG = 6  # as SIGNALS_FAIL, but no rung is left: kept


Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class StepRule:
    """The thresholds a step reads; the band edges may be arrays (one row per setting) that broadcast
    against the answers'. No band (NaN edges): the keep score is not read."""

    lower: Floats | float = np.nan
    upper: Floats | float = np.nan
    router_accept_p: float = 0.9
    min_mean_logprob: float = -0.35

    @classmethod
    def of(cls, config: CascadeConfig) -> StepRule:
        lower, upper = config.unsure_gap if config.unsure_gap is not None else (np.nan, np.nan)
        return cls(lower, upper, config.router_accept_p, config.min_mean_logprob)


@dataclass(frozen=True)
class AnswerState:
    """What is known of each answer when it is judged (NaN: not known)."""

    last: Bools  # no rung is left to escalate to (or the last stage was reached)
    router_p: Floats  # the router's P(correct) for the answering model
    keep_score: Floats  # read against the band (the router's gap with unsure_gap); NaN: no band
    mean_logprob: Floats
    asked: Bools  # a second opinion was asked (or none can be)
    agrees: Floats  # 1 the second opinion agrees, 0 it does not, NaN none


@dataclass(frozen=True)
class Steps:
    action: npt.NDArray[np.int8]
    why: npt.NDArray[np.int8]


def step(state: AnswerState, rule: StepRule) -> Steps:
    """Per answer (broadcast against the rule's band edges), the action and why.

    In order: with a band and a rung left, a keep score at or above the upper edge keeps unread, below the
    lower edge escalates unread, in between asks a second opinion unless one was asked; then the router's
    certainty keeps; then the answer signals (mean logprob, agreement) keep when every available one passes;
    otherwise the answer escalates, or is kept on the last rung."""
    banded = ~np.isnan(state.keep_score) & ~state.last
    with np.errstate(invalid="ignore"):
        above = banded & (state.keep_score >= rule.upper)
        below = banded & ~above & (state.keep_score < rule.lower)
        ask = banded & ~above & ~below & ~state.asked
        sure = state.router_p >= rule.router_accept_p
        logprob_known = ~np.isnan(state.mean_logprob)
        logprob_ok = state.mean_logprob >= rule.min_mean_logprob
    agrees_known = ~np.isnan(state.agrees)
    agrees_ok = state.agrees == 1
    failed = (logprob_known & ~logprob_ok) | (agrees_known & ~agrees_ok)
    passed = (logprob_known & logprob_ok) | (agrees_known & agrees_ok)
    conditions = [above, below, ask, sure, passed & ~failed, state.last]
    shape = np.broadcast_shapes(*(np.shape(c) for c in conditions))
    conditions = [np.broadcast_to(c, shape) for c in conditions]
    keep, esc = Action.KEEP, Action.ESCALATE
    action = np.select(conditions, [keep, esc, Action.ASK, keep, keep, keep], default=esc)
    why = np.select(
        conditions,
        [Why.ABOVE_BAND, Why.BELOW_BAND, Why.UNSURE, Why.ROUTER_SURE, Why.SIGNALS_PASS, Why.LAST_RUNG],
        default=Why.SIGNALS_FAIL,
    )
    return Steps(action.astype(np.int8), why.astype(np.int8))


@dataclass(frozen=True)
class Judged:
    """One answer's step, and why in words (what the gateway reports)."""

    action: Action
    reason: str

    @property
    def accepted(self) -> bool:
        return self.action is Action.KEEP


def judge(signals: Signals, config: CascadeConfig, last: bool, asked: bool) -> Judged:
    """`step` for one answer of the gateway's cascade."""
    state = AnswerState(
        last=np.array([last]),
        router_p=np.array([signals.router_p], dtype=np.float64),
        keep_score=np.array([np.nan if signals.router_gap is None else signals.router_gap]),
        mean_logprob=np.array([np.nan if signals.mean_logprob is None else signals.mean_logprob]),
        asked=np.array([asked]),
        agrees=np.array([np.nan if signals.agrees is None else float(signals.agrees)]),
    )
    steps = step(state, StepRule.of(config))
    return Judged(Action(int(steps.action[0])), _explain(Why(int(steps.why[0])), signals, config))


def _explain(why: Why, signals: Signals, config: CascadeConfig) -> str:
    if why in (Why.ABOVE_BAND, Why.BELOW_BAND, Why.UNSURE):
        assert config.unsure_gap is not None and signals.router_gap is not None
        lower, upper = config.unsure_gap
        gap = signals.router_gap
        if why is Why.ABOVE_BAND:
            return f"router gap {gap:+.3f} >= {upper:g}: kept unread"
        if why is Why.BELOW_BAND:
            return f"router gap {gap:+.3f} < {lower:g}: escalated unread"
        return f"router gap {gap:+.3f} in [{lower:g}, {upper:g}): a second opinion is asked"
    p, accept = signals.router_p, config.router_accept_p
    if why is Why.ROUTER_SURE:
        return f"router P(correct) {p:.3f} >= {accept:g}"
    failed: list[str] = []
    passed: list[str] = []
    if signals.mean_logprob is not None:
        text = f"mean logprob {signals.mean_logprob:.3f}"
        if signals.mean_logprob >= config.min_mean_logprob:
            passed.append(f"{text} >= {config.min_mean_logprob:g}")
        else:
            failed.append(f"{text} < {config.min_mean_logprob:g}")
    if signals.agrees is not None:
        (passed if signals.agrees else failed).append(
            "a second answer agrees" if signals.agrees else "a second answer disagrees"
        )
    if why is Why.SIGNALS_PASS:
        return "; ".join(passed)
    reason = ("; ".join(failed) if failed else "no answer signal") + f" and router P(correct) {p:.3f} < {accept:g}"
    return f"{reason}, but no likelier model is left" if why is Why.LAST_RUNG else reason
