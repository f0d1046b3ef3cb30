"""Shadow judging: a share of answered chats also goes, in the background, to a reference model; a judge
model grades both answers, and the verdicts are stored as outcomes beside the clients' feedback.

A sensitive request is judged only when both the reference and the judge are on-prem models; otherwise it
is skipped (counted as such). Both calls pass the dispatcher with the request's context, which would refuse a
cloud model anyway: the skip keeps the refusal from being an error.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ladder.core.errors import ConfigError, LadderError
from ladder.core.pool import Locality, ModelSpec, PoolConfig
from ladder.core.traffic_db import OutcomeRow
from ladder.core.upstream_replies import Completion
from ladder.gateway.context import Purpose, RequestContext
from ladder.gateway.costs import usage_cost
from ladder.gateway.dispatch import Dispatcher
from ladder.gateway.settings import ShadowSettings
from ladder.gateway.state import Background
from ladder.gateway.traffic_store import TrafficStore, now

log = logging.getLogger("ladder.shadow")
JUDGE_SYSTEM = (
    "You grade answers to a user's request. Reply with one JSON object and nothing else: "
    '{"answer_1": <0 to 1>, "answer_2": <0 to 1>}, where 1 means the answer is correct and complete for '
    "the request and 0 means it is wrong or missing. Judge each answer on its own merits."
)
FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


class Verdict(BaseModel):
    """The judge's strict JSON reply."""

    model_config = ConfigDict(extra="forbid")
    answer_1: float = Field(ge=0, le=1)
    answer_2: float = Field(ge=0, le=1)


def answer_text(completion: Completion) -> str | None:
    """The first choice's text content, or None when there is none (a tool call, an empty answer)."""
    text = completion.text
    return text if text is not None and text.strip() else None


def parse_verdict(text: str | None) -> Verdict | None:
    if not text:
        return None
    try:
        return Verdict.model_validate(json.loads(FENCE.sub("", text.strip())))
    except (ValueError, ValidationError):
        return None


class ShadowJudge:
    """Samples answered requests and judges them off the client's path, within its own budget."""

    def __init__(
        self, settings: ShadowSettings, pool: PoolConfig, dispatcher: Dispatcher, traffic: TrafficStore
    ) -> None:
        names = set(pool.names)
        for field_name in ("reference_model", "judge_model"):
            value = getattr(settings, field_name)
            if value not in names:
                raise ConfigError(
                    f"shadow.{field_name}: {value!r} is not a pool model ({', '.join(pool.names)})"
                )
        self.settings = settings
        self.reference: ModelSpec = pool.model(str(settings.reference_model))
        self.judge: ModelSpec = pool.model(str(settings.judge_model))
        self.on_prem = all(m.locality is Locality.ON_PREM for m in (self.reference, self.judge))
        self.dispatcher = dispatcher
        self.traffic = traffic
        self.spent_usd = 0.0
        self.counts: Counter[str] = Counter()
        self._background = Background()
        self._random = random.Random(settings.seed)

    def offer(
        self,
        ctx: RequestContext,
        body: dict[str, Any],
        text: str,
        answered: ModelSpec,
        completion: Completion,
    ) -> None:
        """Maybe start judging this answer in the background; never waits, never raises."""
        if self._random.random() >= self.settings.share:
            return
        answer = answer_text(completion)
        skip = None
        if ctx.sensitive and not self.on_prem:
            skip = "sensitive request (reference or judge not on-prem)"
        elif answered.name == self.reference.name:
            skip = "the reference model answered"
        elif answered.name == self.judge.name and not self.settings.allow_self_judge:
            skip = "the judge model answered (it would grade itself)"
        elif answer is None:
            skip = "no text answer"
        elif self.spent_usd >= self.settings.budget_usd:
            skip = "budget spent"
        elif len(self._background.pending) >= self.settings.max_in_flight:
            skip = "too many in flight"
        if skip is not None or answer is None:
            self.counts[f"skipped: {skip}"] += 1
            return
        later = ctx.with_deadline_in(self.dispatcher.deadline_s)  # judged after the answer, on its own time
        self._background.run(self._judge(later, body, text, answered, answer))

    async def _call(
        self, ctx: RequestContext, spec: ModelSpec, body: dict[str, Any], purpose: Purpose
    ) -> Completion:
        plain = {**body, "stream": False}
        dispatched = await self.dispatcher.send(ctx, [spec], plain, stream=False, purpose=purpose)
        completion = dispatched.completion
        if completion.usage is not None:
            self.spent_usd += usage_cost(spec, completion.usage)
        return completion

    async def _judge(
        self, ctx: RequestContext, body: dict[str, Any], text: str, answered: ModelSpec, answer: str
    ) -> None:
        request_id = ctx.request_id
        try:
            reference = answer_text(await self._call(ctx, self.reference, body, Purpose.SHADOW_REFERENCE))
            if reference is None:
                self.counts["reference gave no answer"] += 1
                return
            swap = self._random.random() < 0.5  # the routed answer is first or second at random
            first, second = (reference, answer) if swap else (answer, reference)
            prompt = (
                f"Request:\n<<<\n{text}\n>>>\n\nAnswer 1:\n<<<\n{first}\n>>>\n\nAnswer 2:\n<<<\n{second}\n>>>"
            )
            judge_body = {
                "messages": [
                    {"role": "system", "content": JUDGE_SYSTEM},
                    {"role": "user", "content": prompt},
                ],
                "temperature": 0,
                "max_tokens": 64,
            }
            verdict = None
            for _ in range(self.settings.judge_retries + 1):
                judged = await self._call(ctx, self.judge, judge_body, Purpose.SHADOW_JUDGE)
                verdict = parse_verdict(answer_text(judged))
                if verdict is not None:
                    break
            if verdict is None:
                self.counts["malformed verdict"] += 1  # unknown: nothing is stored
                return
            routed_label, reference_label = (
                (verdict.answer_2, verdict.answer_1) if swap else (verdict.answer_1, verdict.answer_2)
            )
            source = f"shadow:{self.judge.name}"
            for model, label in ((answered.name, routed_label), (self.reference.name, reference_label)):
                await self.traffic.add_outcome(OutcomeRow(request_id, now(), model, label, source))
            self.counts["judged"] += 1
        except LadderError as exc:
            self.counts["upstream failed"] += 1
            log.warning("shadow judging of %s failed: %s", request_id, exc)
        except Exception:
            self.counts["error"] += 1
            log.exception("shadow judging of %s failed", request_id)

    @property
    def in_flight(self) -> int:
        """Judgements started and not yet finished."""
        return len(self._background.pending)

    async def drain(self) -> None:
        """Wait for the judgements in flight (tests, and a clean shutdown)."""
        await self._background.drain()

    async def aclose(self) -> None:
        await self._background.cancel()
