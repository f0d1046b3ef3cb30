"""The LLM judge: a pool model grades each answer (or each pair, both ways round) in strict JSON."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ladder.core.locality import refusal
from ladder.core.pool import ModelSpec
from ladder.core.sensitivity import SensitiveScan
from ladder.core.upstream import UpstreamClient
from ladder.training.collect.calls import CallFailed, CallSettings, ask
from ladder.training.collect.questions import Question

Verdict = tuple[float | None, str]
SYSTEM = "You are a strict grader. Reply with one JSON object and nothing else: no prose, no code fences."
REMINDER = "That was not a valid verdict. Reply with only the JSON object described above."


class Grade(BaseModel):
    """A verdict on one answer."""

    model_config = ConfigDict(extra="forbid", strict=True)
    correct: bool
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    reason: str = ""


class Preference(BaseModel):
    """A verdict on two answers to the same question."""

    model_config = ConfigDict(extra="forbid", strict=True)
    winner: Literal["A", "B", "tie"]
    reason: str = ""


def _json_text(text: str) -> str:
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def grade_prompt(question: Question, answer: str, graded: bool) -> str:
    parts = [f"Question:\n{question.text}"]
    if question.reference:
        parts.append(f"Reference answer:\n{question.reference}")
    parts.append(f"Answer to grade:\n{answer}")
    shape = (
        '{"correct": true or false, '
        + ('"score": a number from 0 to 1, ' if graded else "")
        + '"reason": "..."}'
    )
    parts.append(f"Is the answer to grade correct? Reply with JSON: {shape}")
    return "\n\n".join(parts)


def pair_prompt(question: Question, first: str, second: str) -> str:
    parts = [f"Question:\n{question.text}"]
    if question.reference:
        parts.append(f"Reference answer:\n{question.reference}")
    parts += [f"Answer A:\n{first}", f"Answer B:\n{second}"]
    parts.append('Which answer is better? Reply with JSON: {"winner": "A" or "B" or "tie", "reason": "..."}')
    return "\n\n".join(parts)


@dataclass
class LLMJudge:
    """A judge model from the pool, called through the same upstream client as collection.

    A sensitive question (marked in the questions file, or a ``sensitive_patterns`` match in its messages,
    reference or the answers to judge) is sent only to an on-prem judge: a cloud judge leaves it unknown and
    counts the reason in ``withheld``.
    """

    spec: ModelSpec
    settings: CallSettings
    graded: bool = False
    pairwise: bool = False
    tries: int = 3
    concurrency: int = 4
    cost_usd: float = 0.0
    malformed: int = 0
    last_malformed: str | None = None  # the last reply that was not a valid verdict, to show the user
    no_logprobs: set[str] = field(default_factory=set)
    sensitive_patterns: Sequence[str] = ()
    withheld: Counter[str] = field(default_factory=Counter)  # verdicts not asked for, by reason (locality)

    def _refusal(self, question: Question, *answers: str) -> tuple[bool, str | None]:
        """Whether the judge prompt is sensitive, and why the judge may not see it (None: it may)."""
        scan = SensitiveScan.of(self.sensitive_patterns)
        sensitive = question.sensitive or scan.matches([list(question.messages), question.reference, *answers])
        why = refusal(self.spec, sensitive)
        if why is not None:
            self.withheld[why.value] += 1
        return sensitive, None if why is None else f"{self.name}: not judged: {why}"

    @property
    def name(self) -> str:
        mode = ":pairwise" if self.pairwise else (":graded" if self.graded else "")
        return f"llm:{self.spec.name}{mode}"

    async def _verdict(
        self, client: UpstreamClient, question: Question, prompt: str, schema: type[BaseModel], sensitive: bool
    ) -> BaseModel | None:
        messages: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt},
        ]
        for _ in range(self.tries):
            ask_q = Question(id=question.id, text=prompt, messages=tuple(messages), sensitive=sensitive)
            try:
                answer = await ask(client, self.spec, ask_q, self.settings, self.no_logprobs)
            except CallFailed:
                return None
            self.cost_usd += answer.cost_usd
            text = answer.text or ""
            try:
                verdict = schema.model_validate_json(_json_text(text))
            except (ValidationError, ValueError):
                self.malformed += 1
                self.last_malformed = text
                messages = [
                    *messages,
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": REMINDER},
                ]
                continue
            if isinstance(verdict, Grade) and self.graded and verdict.score is None:
                self.malformed += 1
                messages = [
                    *messages,
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": REMINDER},
                ]
                continue
            return verdict
        return None

    async def _grade(self, client: UpstreamClient, question: Question, answer: str) -> Verdict:
        sensitive, withheld = self._refusal(question, answer)
        if withheld is not None:
            return None, withheld
        prompt = grade_prompt(question, answer, self.graded)
        verdict = await self._verdict(client, question, prompt, Grade, sensitive)
        if not isinstance(verdict, Grade):
            return None, f"{self.name}: no valid verdict after {self.tries} tries"
        value = verdict.score if self.graded and verdict.score is not None else float(verdict.correct)
        return value, f"{self.name}: {verdict.reason[:200]}"

    async def grade_all(self, items: Sequence[tuple[Question, str, str]]) -> dict[tuple[str, str], Verdict]:
        """``items`` are (question, model, answer); returns (question id, model) -> verdict."""
        client = UpstreamClient(connect_timeout_s=10.0)
        limit = asyncio.Semaphore(self.concurrency)
        out: dict[tuple[str, str], Verdict] = {}

        async def one(question: Question, model: str, answer: str) -> None:
            async with limit:
                out[(question.id, model)] = await self._grade(client, question, answer)

        try:
            async with asyncio.TaskGroup() as group:
                for question, model, answer in items:
                    group.create_task(one(question, model, answer))
        finally:
            await client.aclose()
        return out

    async def compare_all(
        self, questions: Sequence[tuple[Question, Mapping[str, str]]]
    ) -> dict[tuple[str, str], Verdict]:
        """Pairwise: each pair is judged in both orders; a verdict counts only when both orders agree.

        A model's label is its share of agreed comparisons won (a tie counts half); unknown when none agreed.
        """
        client = UpstreamClient(connect_timeout_s=10.0)
        limit = asyncio.Semaphore(self.concurrency)
        results: dict[tuple[str, str], list[float]] = {}
        disagreed: dict[tuple[str, str], int] = {}

        async def pair(question: Question, a: str, b: str, answers: Mapping[str, str]) -> None:
            sensitive, withheld = self._refusal(question, answers[a], answers[b])
            first = second = None
            if withheld is None:
                async with limit:
                    first = await self._verdict(
                        client, question, pair_prompt(question, answers[a], answers[b]), Preference, sensitive
                    )
                    second = await self._verdict(
                        client, question, pair_prompt(question, answers[b], answers[a]), Preference, sensitive
                    )
            if not isinstance(first, Preference) or not isinstance(second, Preference):
                outcome = None
            elif (first.winner, second.winner) == ("A", "B"):
                outcome = (1.0, 0.0)
            elif (first.winner, second.winner) == ("B", "A"):
                outcome = (0.0, 1.0)
            elif (first.winner, second.winner) == ("tie", "tie"):
                outcome = (0.5, 0.5)
            else:
                outcome = None
            for model, score in zip((a, b), outcome or (None, None), strict=True):
                key = (question.id, model)
                results.setdefault(key, [])
                if score is None:
                    disagreed[key] = disagreed.get(key, 0) + 1
                else:
                    results[key].append(score)

        try:
            async with asyncio.TaskGroup() as group:
                for question, answers in questions:
                    for a, b in itertools.combinations(sorted(answers), 2):
                        group.create_task(pair(question, a, b, answers))
        finally:
            await client.aclose()
        out: dict[tuple[str, str], Verdict] = {}
        for key, scores in results.items():
            detail = json.dumps({"agreed": len(scores), "disagreed": disagreed.get(key, 0)})
            out[key] = (sum(scores) / len(scores) if scores else None, f"{self.name} {detail}")
        return out
