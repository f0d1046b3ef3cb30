"""The vote judge: the answer most models gave, when a strict majority gave it; otherwise no label at all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from ladder.core.answers import vote_key

Verdict = tuple[float | None, str]


def vote(answers: Mapping[str, str]) -> dict[str, Verdict]:
    """Labels for one question's answers (model -> text): 1 for the majority answer, 0 for the others.

    A tie, or no answer held by more than half the models, leaves every model unknown (None): a vote never
    makes the first model "correct" by default. Fewer than two answers cannot be voted on.
    """
    if len(answers) < 2:
        return {model: (None, "vote: fewer than two answers") for model in answers}
    keys = {model: vote_key(text) for model, text in answers.items()}
    counts = Counter(keys.values()).most_common()
    top, votes = counts[0]
    if votes * 2 <= len(answers):
        detail = f"vote: no majority ({votes} of {len(answers)} for the most common answer)"
        return {model: (None, detail) for model in answers}
    return {
        model: (1.0 if key == top else 0.0, f"vote: {votes} of {len(answers)} for {top}")
        for model, key in keys.items()
    }
