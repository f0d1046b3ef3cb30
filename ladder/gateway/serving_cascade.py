"""Serving a cascade: run it (`ladder.gateway.cascade` or the pool file's plan), answer with the chosen stage.

Every stage's cost is added up, every stage is listed in the response's ``ladder.cascade``, the
``x-ladder-cascade*`` headers and the decision record; a streamed request is held until the cascade ends
and then receives the chosen answer as one server-sent stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ladder.core.decision_record import CascadeRecord
from ladder.core.upstream_replies import Completion
from ladder.gateway.cascade import Cascade, Stage
from ladder.gateway.context import RequestContext
from ladder.gateway.costs import Cost, answer_cost
from ladder.gateway.disconnect import cancel_on_disconnect
from ladder.gateway.errors import REQUEST_FAILURES
from ladder.gateway.gateway import Gateway, Routed
from ladder.gateway.json_body import JsonAnswer
from ladder.gateway.plan_cascade import held_models, run_plan
from ladder.gateway.protocol import ChatCompletionCreateParams
from ladder.gateway.serving_chat import SSE_HEADERS, route_chat
from ladder.gateway.sse import data_event


def stage_headers(stages: Sequence[Stage]) -> dict[str, str]:
    """``x-ladder-cascade*``: every model asked, each acceptance score, and why it escalated."""

    def score(s: Stage) -> str:
        lp = s.signals.mean_logprob if s.signals is not None else None
        agrees = s.signals.agrees if s.signals is not None else None
        parts = [f"p={s.signals.router_p:.4f}" if s.signals is not None else "p=none"]
        parts.append("logprob=none" if lp is None else f"logprob={lp:.4f}")
        if agrees is not None:
            parts.append(f"agrees={int(agrees)}")
        if s.signals is not None and s.signals.router_gap is not None:
            parts.append(f"gap={s.signals.router_gap:+.4f}")
        return f"{s.model}:" + ";".join(parts)

    answers = [s for s in stages if s.role == "answer"]
    return {
        "x-ladder-cascade": ",".join(
            f"{s.model}={'accepted' if s.verdict and s.verdict.accepted else 'escalated'}" for s in answers
        ),
        "x-ladder-cascade-scores": ",".join(score(s) for s in answers),
        "x-ladder-cascade-reasons": " | ".join(
            f"{s.model}: {s.verdict.reason}" for s in answers if s.verdict is not None
        ),
        "x-ladder-cascade-calls": ",".join(f"{s.model}({s.role})" for s in stages),
    }


def total_cost(gw: Gateway, stages: Sequence[Stage], final: Stage) -> Cost | None:
    """Every stage's cost added up, beside what the baseline would have charged for the final answer."""
    if final.usage is None:
        return None
    spent = sum(s.cost.cost_usd for s in stages if s.cost is not None)
    baseline = answer_cost(final.dispatched.model, gw.baseline, final.usage)
    return Cost(spent, baseline.baseline_model, baseline.baseline_cost_usd)


def account(gw: Gateway, routed: Routed, stages: Sequence[Stage], final: Stage) -> None:
    """Metrics and latency for the stages other than the final answer (``Gateway.record`` does it; every
    stage's spend was charged when it was paid)."""
    for s in stages:
        if s is final or s.usage is None:
            continue
        gw.metrics.tokens.labels(s.model, "prompt").inc(s.usage.prompt_tokens)
        gw.metrics.tokens.labels(s.model, "completion").inc(s.usage.completion_tokens)
        if s.cost is not None:
            gw.metrics.cost.labels(s.model).inc(s.cost.cost_usd)
        gw.latency.observe(s.dispatched, s.usage, 0.0)


async def create_cascade_completion(
    gw: Gateway,
    ctx: RequestContext,
    params: ChatCompletionCreateParams,
    raw: dict[str, Any],
    request: Request,
) -> Response:
    """Run the cascade and answer with the accepted stage's reply (plain, or as one held stream)."""
    name = gw.settings.policy_name
    routed_params = params.model_copy(update={"model": name}) if params.model == f"{name}-cascade" else params
    routed, body, text = await route_chat(gw, ctx, routed_params, raw, request)
    cascade = Cascade(gw, routed, body, request)
    try:  # a cascade may ask every eligible model once: the hold covers them all (the dispatcher charges
        # each stage and second opinion to it as it is paid, whatever happens to the cascade next)
        eligible = gw.dispatcher.permitted(ctx, [gw.pool.model(c.name) for c in cascade.candidates()])
        plan = cascade.config.plan
        await gw.reserve(routed, held_models(plan, eligible), body, every=True)
        final, second = await cancel_on_disconnect(request, cascade.run() if plan is None else run_plan(cascade, plan))
    except REQUEST_FAILURES as exc:
        gw.record(routed, "chat", None, None, None, text, error=type(exc).__name__)  # stages paid stay charged
        raise
    except BaseException:
        gw.release(routed)
        raise
    stages = [*cascade.stages, *([second] if second is not None and second not in cascade.stages else [])]
    cost = total_cost(gw, stages, final)
    account(gw, routed, stages, final)
    answer = final.completion
    completion = {**(answer.raw if cascade.client_logprobs else answer.without_logprobs()), "model": final.model}
    headers = {**routed.headers(), **stage_headers(stages), "x-ladder-model": final.model}
    headers["x-ladder-attempts"] = str(sum(len(s.dispatched.attempts) for s in stages))
    if cost is not None:
        headers["x-ladder-cost-usd"] = f"{cost.cost_usd:.8f}"
        headers["x-ladder-baseline-cost-usd"] = f"{cost.baseline_cost_usd:.8f}"
    summary = CascadeRecord(stages=[s.record() for s in stages], accepted=final.model)
    costs = cost.to_dict() if cost is not None else {}
    gw.record(
        routed,
        "chat",
        final.dispatched,
        final.usage,
        cost,
        text,
        response_id=answer.id,
        finish_reasons=answer.finish_reasons,
        cascade=summary,
    )
    stages_summary = summary.model_dump(mode="json", exclude_unset=True)
    ladder = {**routed.summary(), "model": final.model, **costs, "cascade": stages_summary}
    if gw.shadow is not None:
        gw.shadow.offer(routed.ctx, body, text, final.dispatched.model, answer)
    if params.stream:
        wants_usage = bool((params.stream_options or {}).get("include_usage"))
        events = held_stream(answer, final.model, ladder, wants_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers={**headers, **SSE_HEADERS})
    completion["ladder"] = ladder
    return JsonAnswer(completion, headers=headers)


async def held_stream(
    answer: Completion, model: str, ladder: dict[str, Any], wants_usage: bool
) -> AsyncIterator[bytes]:
    """The accepted answer as OpenAI chunks: per choice its whole delta, then its finish; usage if asked."""
    base = {
        "id": answer.raw.get("id", "chatcmpl-ladder"),
        "object": "chat.completion.chunk",
        "created": answer.raw.get("created", int(time.time())),
        "model": model,
    }
    for i, choice in enumerate(answer.choices):
        delta: dict[str, Any] = {"role": "assistant", "content": choice.text}
        if choice.tool_calls:
            delta["tool_calls"] = [{"index": k, **call.raw} for k, call in enumerate(choice.tool_calls)]
        index = choice.index if choice.index is not None else i
        yield data_event({**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        finish = choice.finish_reason or "stop"
        yield data_event({**base, "choices": [{"index": index, "delta": {}, "finish_reason": finish}]})
    if wants_usage and answer.raw.get("usage"):
        yield data_event({**base, "choices": [], "usage": answer.raw["usage"], "ladder": ladder})
    yield data_event("[DONE]")
