"""Token logprobs as an upstream reports them: one typed token each, non-finite values (-inf) kept."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token and its log probability (``-inf`` where the upstream says so), with the
    upstream's likeliest alternatives at that place (``top_logprobs``: (token, logprob) pairs) if sent."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


def token_logprobs(value: Any) -> tuple[TokenLogprob, ...] | None:
    """The tokens of an OpenAI ``choice.logprobs`` object (``{"content": [{"token", "logprob"}, ..]}``).

    None when it has no ``content`` list; entries whose ``logprob`` is not a number are skipped.
    """
    content = value.get("content") if isinstance(value, Mapping) else None
    if not isinstance(content, list):
        return None
    return tuple(
        TokenLogprob(str(entry.get("token", "")), float(entry["logprob"]), _top(entry.get("top_logprobs")))
        for entry in content
        if isinstance(entry, Mapping) and _number(entry.get("logprob"))
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _top(value: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        (str(e.get("token", "")), float(e["logprob"]))
        for e in value
        if isinstance(e, Mapping) and _number(e.get("logprob"))
    )


def yes_logprob(tokens: Sequence[TokenLogprob] | None) -> float | None:
    """log P("yes") at the first token of a yes/no reply: the probability of every spelling of "yes"
    ("Yes", " yes", "YES.") among the token and its top alternatives, added up; ``-inf`` when none of
    them is a yes but one is a no (a certain "no"); None when the upstream sent no logprobs, or when the
    reply is neither (its first token and alternatives hold no yes and no no: nothing was read)."""
    if not tokens:
        return None
    first = tokens[0]
    seen = {first.token: first.logprob, **dict(first.top)}
    words = {token: token.strip().strip(".!").lower() for token in seen}
    p = sum(math.exp(lp) for token, lp in seen.items() if words[token] == "yes")
    if p > 0:
        return math.log(min(p, 1.0))
    return -math.inf if "no" in words.values() else None
