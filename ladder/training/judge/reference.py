"""The reference judge: choice letters, numbers within a tolerance, normalised text, code under tests."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ladder.core.answers import choice_letter, final_number, is_choice_letter, parse_number, squad_text
from ladder.training.collect.questions import Question
from ladder.training.judge.jail import Jail
from ladder.training.judge.sandbox import Limits, Outcome, run_tests

Verdict = tuple[float | None, str]
"""``(correct in [0, 1], or None for unknown; why)``."""

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


def code_of(text: str) -> str:
    """An answer's program: the first fenced block defining something, else the first block, else all."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    for body in blocks:
        if "def " in body or "class " in body:
            return str(body)
    return str(blocks[0]) if blocks else text


@dataclass(frozen=True)
class ReferenceJudge:
    """Judges an answer against the question's reference or tests; unknown when it has neither."""

    rel_tol: float = 1e-4
    abs_tol: float = 1e-6
    limits: Limits = field(default_factory=Limits)
    jail: Jail | None = None
    """Where answer code runs; None: this machine's jail, found once."""
    unsafe_code: bool = False
    """Run answer code unconfined where there is no jail (``ladder judge --unsafe-code``)."""

    @property
    def name(self) -> str:
        return "reference"

    def judge(self, question: Question, answer: str) -> Verdict:
        if question.tests:
            result = run_tests(
                code_of(answer), question.tests, self.limits, jail=self.jail, unsafe_code=self.unsafe_code
            )
            if result.outcome is Outcome.NO_JAIL:
                return None, "code: not run, no jail"
            return (1.0 if result.passed else 0.0), f"code: {result.detail}"
        reference = question.reference
        if reference is None or not reference.strip():
            return None, "no reference or tests"
        if is_choice_letter(reference):
            want = reference.strip().strip("().").upper()
            got = choice_letter(answer)
            if got is None:
                return 0.0, f"choice: no letter found, expected {want}"
            return (1.0 if got == want else 0.0), f"choice: {got} vs {want}"
        target = parse_number(reference)
        if target is not None:
            value = final_number(answer)
            if value is None:
                return 0.0, f"number: none found, expected {target:g}"
            close = math.isclose(value, target, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
            return (1.0 if close else 0.0), f"number: {value:g} vs {target:g}"
        want_text, got_text = squad_text(reference), squad_text(answer)
        if not want_text:
            return None, "reference is empty once normalised"
        if got_text == want_text:
            return 1.0, "text: exact match"
        if f" {want_text} " in f" {got_text} ":
            return 1.0, "text: reference found in the answer"
        return 0.0, "text: no match"
