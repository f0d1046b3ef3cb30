"""A calibrated cascade as the pool file serves it: its settings, prices and calibrators, and what they estimate.

`ladder evaluate-confidence --write-plan` fits one (`ladder.training.served_plan`) and writes it to the pool
file's ``routing.cascade.plan``; the gateway's cascade runs it per request (`ladder.gateway.plan_cascade`)
and offline evaluation plays it over recorded answers (`ladder.training.served_plan.play_plan`), both
through the functions here and the step rule of `ladder.core.rung`, so a plan is served as it was costed.

It reads only what the gateway has at request time: the router's prefill P(correct) for each model, each
answer's confidence (the log-probability of an answer that picks an option letter, else the log P("yes")
of a self-check call where the plan pays for one), and the agreement of the answers in hand
(`ladder.core.answers.agreement`). The calibrators are small logistic models given as plain numbers: an
intercept and one weight per named feature (see `Logistic` and `CalibratedPlan`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ladder.core.answers import choice_letter
from ladder.core.rung import RungSettings

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

SELF_CHECK_PROMPT = "Is the answer above correct? Answer yes or no."
CONFIDENCE_FLOOR = -20.0
"""A confidence log-probability below this (``-inf``: a certain "no") is read as this."""
CONFIDENCE_COLUMNS = ("lp_answer", "p_answer", "odds_answer", "lp_check", "p_check", "odds_check", "is_check")
"""The raw confidence read by its kind: log-probability, probability and log-odds, once for an answer's own
log-probability and once for a self-check's log P("yes"), and whether it is a self-check."""
SINGLE_FEATURES = frozenset({*CONFIDENCE_COLUMNS, "router"})
"""What a model's own calibrator reads: its raw confidence, and the log-odds of the router's P for it."""
_STATE_FEATURE = re.compile(r"^(router|p):(?P<model>.+)$|^agree:(?P<a>.+)\|(?P<b>.+)$")


def logit(p: npt.ArrayLike) -> Floats:
    """Log-odds, with P clipped to [1e-4, 1 - 1e-4]."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.asarray(np.log(q) - np.log1p(-q))


def confidence_columns(lp: npt.ArrayLike, is_check: npt.ArrayLike) -> dict[str, Floats]:
    """`CONFIDENCE_COLUMNS` of raw confidences ``lp`` (log-probabilities; NaN or -inf read as
    `CONFIDENCE_FLOOR`, 0 as a certain yes) of the kinds ``is_check`` says."""
    raw = np.clip(np.nan_to_num(np.asarray(lp, dtype=np.float64), nan=CONFIDENCE_FLOOR), CONFIDENCE_FLOOR, -1e-6)
    check = np.asarray(is_check, dtype=np.float64)
    p = np.exp(raw)
    odds = logit(p)
    answer = 1.0 - check
    return {
        "lp_answer": raw * answer,
        "p_answer": p * answer,
        "odds_answer": odds * answer,
        "lp_check": raw * check,
        "p_check": p * check,
        "odds_check": odds * check,
        "is_check": check,
    }


def reads_answer_logprob(answer: str | None, answer_lp: float | None) -> bool:
    """Whether an answer's own log-probability is its confidence: it picks an option letter and the
    upstream sent its logprobs (free text needs a self-check to be read)."""
    return answer_lp is not None and not math.isnan(answer_lp) and choice_letter(answer) is not None


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Logistic(_Plain):
    """P = sigmoid(intercept + sum of weight x feature), over named features."""

    intercept: float = Field(allow_inf_nan=False)
    weights: dict[str, float] = Field(default_factory=dict)

    @field_validator("weights")
    @classmethod
    def _finite(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = [name for name, w in weights.items() if not math.isfinite(w)]
        if bad:
            raise ValueError(f"weights must be finite numbers: {', '.join(bad)}")
        return weights

    def predict(self, features: Mapping[str, Floats], rows: int) -> Floats:
        z = np.full(rows, self.intercept, dtype=np.float64)
        for name, weight in self.weights.items():
            z = z + weight * features[name]
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))))


class PlanModel(_Plain):
    """One model of the plan: its expected prices, whether its self-check is paid for, its calibrator."""

    name: str = Field(min_length=1)
    answer_usd: float = Field(ge=0, allow_inf_nan=False, description="Expected price of an answer")
    self_check_usd: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Expected price of a self-check call, averaged over answers that need none",
    )
    self_check: bool = Field(
        default=False,
        description="Read an answer that picks no option letter (or came without logprobs) by a self-check "
        "call; otherwise it stays unread and the router's P stands in",
    )
    calibrator: Logistic = Field(description=f"P(its answer is right) over {sorted(SINGLE_FEATURES)}")

    @field_validator("calibrator")
    @classmethod
    def _single_features(cls, calibrator: Logistic) -> Logistic:
        unknown = sorted(set(calibrator.weights) - SINGLE_FEATURES)
        if unknown:
            raise ValueError(f"unknown features {unknown}: a model's calibrator reads {sorted(SINGLE_FEATURES)}")
        return calibrator

    def wants_self_check(self, answer: str | None, answer_lp: float | None) -> bool:
        """Whether the plan pays for a self-check of this answer (its own logprob cannot be read)."""
        return self.self_check and not reads_answer_logprob(answer, answer_lp)


def set_name(names: Sequence[str]) -> str:
    """The key of a set of models in ``states``: their names in the plan's order, joined by ``+``."""
    return "+".join(names)


class CalibratedPlan(_Plain):
    """``routing.cascade.plan``: the step rule's settings (`ladder.core.rung.RungSettings`), the models
    with their prices and calibrators, and per set of models asked (``states``, keyed ``a+b``) one
    calibrator per model: P(its answer is right) for a model in the set, P(it would be right) for one not
    in it. A state calibrator reads ``router:<model>`` (log-odds of the router's P, any model),
    ``p:<model>`` (log-odds of an asked model's calibrated P, or of the router's where unread) and
    ``agree:<a>|<b>`` (two asked models' agreement, in the plan's order)."""

    cost_weight: float = Field(ge=0, allow_inf_nan=False, description="P(correct) given up per USD")
    margin: float = Field(default=0.0, allow_inf_nan=False, description="Gain an escalation must clear")
    max_stages: int = Field(default=3, ge=1, le=8, description="Most models asked per request")
    models: tuple[PlanModel, ...] = Field(min_length=1)
    states: dict[str, dict[str, Logistic]] = Field(
        default_factory=dict, description="Per set of models asked (all sets up to max_stages models)"
    )

    @model_validator(mode="after")
    def _complete(self) -> CalibratedPlan:
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"plan models must differ: {list(names)}")
        needed = {set_name(s): s for s in self.reachable_sets()}
        unknown = sorted(set(self.states) - {set_name(s) for s in self.all_sets()})
        if unknown:
            raise ValueError(f"states {unknown}: a set is plan models joined by '+' in the plan's order")
        missing = [key for key in needed if key not in self.states]
        if missing:
            raise ValueError(f"states lacks the sets {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        for key, calibrators in self.states.items():
            if set(calibrators) != set(names):
                raise ValueError(f"states.{key}: one calibrator per plan model {list(names)}")
            inside = set(key.split("+"))
            for model, calibrator in calibrators.items():
                for feature in calibrator.weights:
                    problem = self._state_feature_problem(feature, inside)
                    if problem:
                        raise ValueError(f"states.{key}.{model}: feature {feature!r} {problem}")
        return self

    def _state_feature_problem(self, feature: str, inside: set[str]) -> str | None:
        found = _STATE_FEATURE.match(feature)
        if found is None:
            return "is none of router:<model>, p:<model>, agree:<a>|<b>"
        if found.group("model") is not None:
            model = found.group("model")
            if model not in self.names:
                return "names no plan model"
            return None if feature.startswith("router:") or model in inside else "reads a model not asked"
        a, b = found.group("a"), found.group("b")
        if not {a, b} <= inside:
            return "reads a model not asked"
        return None if self.names.index(a) < self.names.index(b) else "names its pair out of the plan's order"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def rung(self) -> RungSettings:
        return RungSettings(self.cost_weight, self.margin, self.max_stages)

    def all_sets(self) -> Iterator[tuple[str, ...]]:
        for size in range(1, len(self.models) + 1):
            yield from itertools.combinations(self.names, size)

    def reachable_sets(self) -> Iterator[tuple[str, ...]]:
        """The sets of models a request can have asked when a calibrator is read (none with one stage)."""
        if self.max_stages > 1:
            yield from (s for s in self.all_sets() if len(s) <= self.max_stages)

    def prices(self) -> Floats:
        """Each model's expected price if asked: its answer, and its self-check where the plan pays one."""
        return np.array([m.answer_usd + (m.self_check_usd if m.self_check else 0.0) for m in self.models])

    def known(self, model: int, lp: Floats, is_check: Bools, router_p: Floats) -> Floats:
        """[rows] what is known of ``model``'s answer: its calibrated P where its confidence ``lp`` was
        read (not NaN), else the router's P for it."""
        spec = self.models[model]
        features = {**confidence_columns(lp, is_check), "router": logit(router_p[:, model])}
        p = spec.calibrator.predict(features, len(lp))
        return np.asarray(np.where(np.isnan(lp), router_p[:, model], p))

    def estimates(self, mask: int, router_p: Floats, known: Floats, agree: Floats) -> tuple[Floats, Floats]:
        """With the models of bit ``mask`` asked (bit j: the plan's model j; not 0): ``held`` [rows,
        models], P(that answer is right) for the asked models (NaN for the others), and ``ahead``, P(that
        model would be right) for the others (NaN for the asked). ``router_p`` and ``known`` are [rows,
        models] (`known`; entries of models not asked are not read), ``agree`` [rows, models, models]."""
        rows, names = len(router_p), self.names
        inside = [j for j in range(len(names)) if mask >> j & 1]
        held = np.full((rows, len(names)), np.nan)
        ahead = np.full((rows, len(names)), np.nan)
        if not self.states:  # one stage: its answer is never weighed, and it is returned
            held[:, inside] = 1.0
            return held, ahead
        calibrators = self.states[set_name([names[j] for j in inside])]
        features: dict[str, Floats] = {f"router:{n}": logit(router_p[:, j]) for j, n in enumerate(names)}
        features.update({f"p:{names[j]}": logit(known[:, j]) for j in inside})
        for a, b in itertools.combinations(inside, 2):
            features[f"agree:{names[a]}|{names[b]}"] = np.asarray(agree[:, a, b], dtype=np.float64)
        for j, name in enumerate(names):
            (held if j in inside else ahead)[:, j] = calibrators[name].predict(features, rows)
        return held, ahead
