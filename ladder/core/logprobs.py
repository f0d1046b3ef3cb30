"""Token logprobs as an upstream reports them: one typed token each, non-finite values (-inf) kept."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token and its log probability (``-inf`` where the upstream says so)."""

    token: str
    logprob: float


def token_logprobs(value: Any) -> tuple[TokenLogprob, ...] | None:
    """The tokens of an OpenAI ``choice.logprobs`` object (``{"content": [{"token", "logprob"}, ..]}``).

    None when it has no ``content`` list; entries whose ``logprob`` is not a number are skipped.
    """
    content = value.get("content") if isinstance(value, Mapping) else None
    if not isinstance(content, list):
        return None
    return tuple(
        TokenLogprob(str(entry.get("token", "")), float(entry["logprob"]))
        for entry in content
        if isinstance(entry, Mapping)
        and isinstance(entry.get("logprob"), int | float)
        and not isinstance(entry.get("logprob"), bool)
    )
