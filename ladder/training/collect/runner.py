"""Ask every question of every pool model: bounded concurrency per upstream, a budget, a per-model report."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from ladder.core.errors import ConfigError
from ladder.core.locality import Refusal, refusal
from ladder.core.pool import ModelSpec, PoolConfig
from ladder.core.pricing import estimate_tokens, price_usd
from ladder.core.secrets import SECRETS_DIR_ENV, secret
from ladder.core.sensitivity import SensitiveScan
from ladder.core.upstream import UpstreamClient
from ladder.training.collect.calls import CallFailed, CallSettings, ask, prompt_chars
from ladder.training.collect.questions import Question
from ladder.training.collect.store import Answer, AnswerStore

Progress = Callable[[int, int, float], None]
"""``(calls done, calls to make, USD spent in the store so far)``."""
INPUT_MARGIN = 1.5  # reserve this many times the estimated input tokens until real counts are seen


def select_models(pool: PoolConfig, names: Sequence[str] | None) -> list[ModelSpec]:
    """The pool's models, or the named subset (in pool order); an unknown name is an error."""
    if not names:
        return list(pool.models)
    unknown = [n for n in names if n not in pool.names]
    if unknown:
        raise ConfigError(f"--models names {', '.join(unknown)}, not in the pool ({', '.join(pool.names)})")
    return [m for m in pool.models if m.name in names]


def check_keys(models: Sequence[ModelSpec]) -> None:
    """Refuse before any call when a model's key variable is unset, naming the variable."""
    for model in models:
        env = model.upstream.api_key_env
        if env and not secret(env):
            raise ConfigError(
                f"model {model.name}: its key variable {env} is not set (upstream.api_key_env), "
                f"nor a file {env} in {SECRETS_DIR_ENV}"
            )


def upstream_key(spec: ModelSpec) -> str:
    """Models served from the same host and port share one concurrency limit."""
    parts = urlsplit(str(spec.upstream.base_url))
    return f"{parts.scheme}://{parts.netloc}"


def mark_sensitive(questions: Sequence[Question], patterns: Sequence[str]) -> list[Question]:
    """The questions, each scanned once: ``sensitive`` when the file marks it or a pattern matches any key or
    string of its messages (read as a person would, ``ladder.core.sensitivity``)."""
    scan = SensitiveScan.of(patterns)
    return [q if q.sensitive or not scan.matches(list(q.messages)) else replace(q, sensitive=True) for q in questions]


def withheld(questions: Sequence[Question], models: Sequence[ModelSpec]) -> dict[tuple[str, str], Refusal]:
    """(question id, model) pairs the locality rule forbids (``mark_sensitive`` first), with the reason."""
    return {(q.id, m.name): why for q in questions for m in models if (why := refusal(m, q.sensitive)) is not None}


STOP_AFTER_FAILURES = 3  # calls in a row with no answer (after their retries) before a model is given up on


@dataclass
class ModelReport:
    """What one model's calls gave in this run."""

    answered: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    retries: int = 0
    failing_in_a_row: int = 0
    stopped: str | None = None  # why the model was given up on in this run (its upstream fails every call)
    not_asked: int = 0  # calls left unmade once it was stopped
    skipped: Counter[str] = field(default_factory=Counter)  # never asked, by reason (locality): not failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "skipped": dict(self.skipped),
            "failed": dict(self.failed),
            "errors": dict(self.errors),
            "retries": self.retries,
            "cost_usd": self.cost_usd,
            "stopped": self.stopped,
            "not_asked": self.not_asked,
        }

    def call_failed(self, reason: str, url: str) -> None:
        """Count a call with no answer; after STOP_AFTER_FAILURES in a row, stop asking this model."""
        self.errors[reason] += 1
        self.failing_in_a_row += 1
        if self.stopped is None and self.failing_in_a_row >= STOP_AFTER_FAILURES:
            self.stopped = f"{self.failing_in_a_row} calls in a row gave no answer, the last: {reason} ({url})"


@dataclass
class CollectReport:
    """A run's outcome: per model, how many calls remain, and whether the budget stopped it."""

    models: dict[str, ModelReport]
    planned: int
    already_stored: int
    spent_usd: float
    stopped_by_budget: bool = False
    not_started: int = 0

    @property
    def skipped(self) -> int:
        return sum(sum(m.skipped.values()) for m in self.models.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned_calls": self.planned,
            "already_stored": self.already_stored,
            "spent_usd_in_store": self.spent_usd,
            "stopped_by_budget": self.stopped_by_budget,
            "not_started": self.not_started,
            "skipped": self.skipped,
            "models": {name: report.to_dict() for name, report in self.models.items()},
        }


class Budget:
    """Spend so far plus reservations for calls in flight; a call starts only if its worst case fits."""

    def __init__(self, limit_usd: float | None, spent_usd: float) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.reserved_usd = 0.0
        self.exhausted = False

    def reserve(self, amount: float) -> bool:
        if self.exhausted:
            return False
        if self.limit_usd is not None and self.spent_usd + self.reserved_usd + amount > self.limit_usd:
            self.exhausted = True
            return False
        self.reserved_usd += amount
        return True

    def settle(self, reserved: float, spent: float) -> None:
        self.reserved_usd -= reserved
        self.spent_usd += spent


class InputRatio:
    """Real input tokens per estimated token, per model, learnt from the answers as they come."""

    def __init__(self) -> None:
        self.worst: dict[str, float] = {}

    def observe(self, answer: Answer, estimated: int) -> None:
        if answer.input_tokens and not answer.usage_estimated and estimated > 0:
            ratio = answer.input_tokens / estimated
            self.worst[answer.model] = max(self.worst.get(answer.model, 0.0), ratio)

    def tokens(self, model: str, estimated: int) -> int:
        return math.ceil(estimated * self.worst.get(model, INPUT_MARGIN) * 1.05)


def worst_cost(spec: ModelSpec, input_tokens: int, settings: CallSettings) -> float:
    """A call's cost if it fills ``max_tokens``: what the budget reserves while it is in flight."""
    out_tokens = max(settings.max_tokens, int(spec.extra_body.get("max_tokens") or 0))
    return price_usd(spec, input_tokens, out_tokens)


async def collect(
    store: AnswerStore,
    models: Sequence[ModelSpec],
    questions: Sequence[Question],
    settings: CallSettings,
    *,
    concurrency: int = 4,
    budget_usd: float | None = None,
    progress: Progress | None = None,
    sensitive_patterns: Sequence[str] = (),
) -> CollectReport:
    """Ask each (question, model) pair that has no row in the store yet, writing each answer as it arrives.

    A sensitive question (``mark_sensitive``) is never sent to a cloud model: the pair is counted as skipped
    in the model's report, stores nothing (a later run skips it again) and is not a failure of the model.
    """
    check_keys(models)
    questions = mark_sensitive(questions, sensitive_patterns)
    done = store.answered()
    refused = withheld(questions, models)
    passed = done | refused.keys()
    todo = [(q, m) for q in questions for m in models if (q.id, m.name) not in passed]
    report = CollectReport(
        models={m.name: ModelReport() for m in models},
        planned=len(todo),
        already_stored=sum(1 for q in questions for m in models if (q.id, m.name) in done),
        spent_usd=store.spent_usd(),
    )
    for (qid, name), why in refused.items():
        if (qid, name) not in done:  # stored before the question was marked: kept, not asked again
            report.models[name].skipped[why.value] += 1
    budget = Budget(budget_usd, report.spent_usd)
    limits = {key: asyncio.Semaphore(concurrency) for key in {upstream_key(m) for m in models}}
    ratios, no_logprobs = InputRatio(), set[str]()
    finished = 0
    if progress:
        progress(0, len(todo), budget.spent_usd)
    client = UpstreamClient(connect_timeout_s=min(10.0, settings.timeout_s))

    async def one(question: Question, spec: ModelSpec) -> None:
        nonlocal finished
        async with limits[upstream_key(spec)]:
            estimated = estimate_tokens(prompt_chars(spec, question))
            reserved = worst_cost(spec, ratios.tokens(spec.name, estimated), settings)
            model_report = report.models[spec.name]
            if model_report.stopped is not None:
                model_report.not_asked += 1
                finished += 1
                if progress:
                    progress(finished, len(todo), budget.spent_usd)
                return
            if not budget.reserve(reserved):
                report.not_started += 1
                return
            spent = 0.0
            try:
                answer = await ask(client, spec, question, settings, no_logprobs)
            except CallFailed as exc:
                model_report.call_failed(str(exc), str(spec.upstream.base_url))
            else:
                model_report.failing_in_a_row = 0
                if store.put_answer(answer):
                    spent = answer.cost_usd
                    ratios.observe(answer, estimated)
                    model_report.cost_usd += answer.cost_usd
                    model_report.retries += answer.attempts - 1
                    if answer.ok:
                        model_report.answered += 1
                    else:
                        model_report.failed[answer.failure or "failed"] += 1
            finally:
                budget.settle(reserved, spent)
            finished += 1
            if progress:
                progress(finished, len(todo), budget.spent_usd)

    try:
        async with asyncio.TaskGroup() as group:
            for question, spec in todo:
                group.create_task(one(question, spec))
    finally:
        await client.aclose()
    report.stopped_by_budget = budget.exhausted
    report.spent_usd = budget.spent_usd
    return report
