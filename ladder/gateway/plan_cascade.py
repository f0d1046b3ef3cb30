"""The gateway's calibrated cascade: the pool file's plan (``routing.cascade.plan``) run for one request.

Each step is `ladder.core.rung.step` on the plan's estimates (`ladder.core.confidence_plan`) from what is
known so far: the router's P(correct) per model, each answer's confidence, the answers' agreement. An
answer that picks an option letter is read by its own logprob; another is read by a self-check where the
plan pays for one: the same model is asked whether its answer is right, and log P("yes") is read from the
first token's top logprobs. A self-check is an upstream call like any other (``Purpose.SELF_CHECK``,
through the dispatcher: locality, deadline and spend hold for it), priced and listed as a stage. Once the
step keeps, the answer with the highest calibrated P is returned (`ladder.core.rung.answer_to_return`).
A model whose answer call fails is passed over (the next answer lists it as a failed attempt); a self-check
that is refused, fails or brings no yes/no logprobs leaves its answer unread, as a missing reading: the
router's P stands in; only a self-check that was answered is paid, and one that was not is named in its
answer's reason.
`ladder.training.served_plan.play_plan` plays the same plan over recorded answers with the same functions.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ladder.core.answers import agreement
from ladder.core.cascade import Signals, Verdict, mean_logprob
from ladder.core.confidence_plan import SELF_CHECK_PROMPT, CalibratedPlan, reads_answer_logprob
from ladder.core.errors import NoEligibleModelError, UpstreamRejectedError
from ladder.core.logprobs import yes_logprob
from ladder.core.pool import ModelSpec
from ladder.core.rung import answer_to_return, step
from ladder.gateway.cascade import Cascade, Stage
from ladder.gateway.context import Purpose
from ladder.gateway.dispatch import Attempt
from ladder.gateway.errors import REQUEST_FAILURES

SELF_CHECK_TOP_LOGPROBS = 5
_NOT_FOR_A_CHECK = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "n", "stop", "stream_options")


def held_models(plan: CalibratedPlan | None, eligible: list[ModelSpec]) -> list[ModelSpec]:
    """The calls a cascade's budget hold covers: each eligible model once, and once more where the plan
    may pay for its self-check."""
    if plan is None:
        return eligible
    checked = {m.name for m in plan.models if m.self_check}
    return [*eligible, *(spec for spec in eligible if spec.name in checked)]


def self_check_body(cascade: Cascade, answer: str | None) -> dict[str, Any]:
    """The request's conversation, the model's answer, and the yes/no question: one token, with logprobs."""
    body = {k: v for k, v in cascade.plain.items() if k not in _NOT_FOR_A_CHECK}
    body.pop("max_completion_tokens", None)
    messages = [
        *body.get("messages", []),
        {"role": "assistant", "content": answer or ""},
        {"role": "user", "content": SELF_CHECK_PROMPT},
    ]
    return {**body, "messages": messages, "max_tokens": 1, "logprobs": True, "top_logprobs": SELF_CHECK_TOP_LOGPROBS}


def outcome(exc: BaseException) -> str:
    """How a failed call ended, as a decision record's failed attempt says it (``HTTP 503``, ``timeout``)."""
    if isinstance(exc, UpstreamRejectedError):
        return f"HTTP {exc.status}"
    return str(getattr(exc, "reason", None) or type(exc).__name__)


async def self_check(cascade: Cascade, spec: ModelSpec, answer: Stage) -> Stage | str:
    """Ask ``spec`` whether its ``answer`` is right: the self-check's stage, or how its call was refused
    or failed (nothing paid, the answer stays unread)."""
    try:
        return await cascade.call(
            [spec], "self-check", Purpose.SELF_CHECK, self_check_body(cascade, answer.completion.text)
        )
    except UpstreamRejectedError as exc:
        cascade.refused_logprobs.add(spec.name)
        return f"refused ({outcome(exc)})"
    except REQUEST_FAILURES as exc:
        return f"failed ({outcome(exc)})"


async def run_plan(cascade: Cascade, plan: CalibratedPlan) -> tuple[Stage, None]:
    """Run ``plan`` for the cascade's request; the stage whose answer is returned. A model the request may
    not reach, or whose call failed, is passed over; with no answer at all the last failure is raised."""
    names = plan.names
    decided = {c.name: c for c in cascade.routed.decision.candidates}
    router_p = np.array([[decided[n].p_correct if n in decided else 0.0 for n in names]], dtype=np.float64)
    available = [n in cascade.eligible for n in names]
    asked = [False] * len(names)
    known = router_p.copy()
    agree = np.zeros((1, len(names), len(names)))
    held = ahead = np.full((1, len(names)), np.nan)  # replaced, never written in place
    prices = plan.prices().tolist()
    p_keep: float | None = None
    answers: dict[int, Stage] = {}
    reasons: list[str] = []
    then_at: dict[int, int] = {}  # per answer, the index of the step taken after it
    unchecked: dict[int, str] = {}  # per answer, how its self-check was refused or failed
    failure: BaseException | None = None
    failed: list[Attempt] = []  # answer calls that failed since the last answer, listed with the next one
    mask = 0
    while True:
        estimate = router_p[0] if mask == 0 else ahead[0]
        q = [float(v) if ok else -math.inf for v, ok in zip(estimate, available, strict=True)]
        if p_keep is None and not any(ok and not a for ok, a in zip(available, asked, strict=True)):
            raise failure or NoEligibleModelError("no model of the cascade's plan may answer this request")
        decision = step(p_keep, q, prices, asked, plan.rung)
        reasons.append(decision.reason)
        if decision.model is None:
            break
        j = decision.model
        spec = cascade.gw.pool.model(names[j])
        started = time.perf_counter()
        try:
            stage = await cascade.call([spec], "answer", Purpose.CASCADE_STAGE)
        except REQUEST_FAILURES as exc:
            available[j], failure = False, exc
            failed.append(Attempt(names[j], outcome(exc), (time.perf_counter() - started) * 1000))
            reasons[-1] += f" ({names[j]} failed: {failed[-1].outcome})"
            continue
        stage.dispatched.attempts[:0], failed = failed, []
        cascade.stages.append(stage)
        answers[j], asked[j], then_at[j] = stage, True, len(reasons)
        mask |= 1 << j
        text = stage.completion.text
        own_lp = mean_logprob(stage.completion.logprobs)
        lp, is_check = (own_lp if reads_answer_logprob(text, own_lp) else None), False
        if plan.models[j].wants_self_check(text, own_lp) and spec.name not in cascade.refused_logprobs:
            checked = await self_check(cascade, spec, stage)
            if isinstance(checked, str):
                unchecked[j] = checked
            else:
                cascade.stages.append(checked)
                yes = yes_logprob(checked.completion.logprobs)
                if yes is not None:
                    checked.note = f"P(yes) {math.exp(yes):.4f}"
                elif checked.completion.logprobs:
                    checked.note = "neither yes nor no in its top logprobs: unread"
                else:
                    checked.note = "no logprobs: unread"
                lp, is_check = (yes, True) if yes is not None else (None, True)
        read = np.array([np.nan if lp is None else lp])
        known[0, j] = plan.known(j, read, np.array([is_check]), router_p)[0]
        for i, other in answers.items():
            if i != j:
                agree[0, i, j] = agree[0, j, i] = agreement(other.completion.text, text)
        held, ahead = plan.estimates(mask, router_p, known, agree)
        p_keep = float(np.max(held[0][np.array(asked)]))
        stage.signals = Signals(router_p=float(router_p[0, j]), mean_logprob=own_lp)
    returned = int(answer_to_return(held, np.array([asked]))[0])
    for j, stage in answers.items():
        kept = j == returned
        then = reasons[then_at[j]] if then_at[j] < len(reasons) else ""
        why = f"calibrated P(correct) {held[0, j]:.3f} after {sum(asked)} answer(s); then {then}"
        if j in unchecked:
            why = f"self-check {unchecked[j]}: unread; {why}"
        stage.verdict = Verdict(kept, why + ("; returned" if kept else ""))
    return answers[returned], None
