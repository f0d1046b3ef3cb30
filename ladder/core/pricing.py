"""Prices in one place: token estimates, expected output tokens and the USD a request costs on a model.

The router's expected costs, the gateway's answer and baseline costs and the training pipeline's cost
matrix all come from here, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ladder.core.errors import ConfigError
from ladder.core.pool import ModelSpec, PoolConfig

REFERENCE_INPUT_TOKENS = 1000  # the prompt size the default baseline (the priciest model) is judged at


def estimate_tokens(text: str) -> int:
    """Tokens of a text for pricing: about 4 characters a token for ASCII, one per other character (CJK)."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return max(1, round(ascii_chars / 4 + (len(text) - ascii_chars)))


def price_usd(model: ModelSpec, input_tokens: float, output_tokens: float) -> float:
    """USD for one request on ``model``: tokens in and out at its per-million prices."""
    return (input_tokens * model.price.input_per_1m + output_tokens * model.price.output_per_1m) / 1_000_000


@dataclass(frozen=True)
class Usage:
    """Tokens an upstream reported for one answer (OpenAI's ``usage`` object)."""

    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None
        return cls(prompt, completion)


@dataclass(frozen=True)
class Pricing:
    """A pool's prices plus the output tokens learned per model (keyed by checkpoint label).

    Expected output tokens of a model: the pool's ``expected_output_tokens`` when set, else the mean learned
    from the training data, else the pool's ``routing.default_output_tokens``.
    """

    pool: PoolConfig
    learned_output_tokens: Mapping[str, float] = field(default_factory=dict)

    def output_tokens(self, model: ModelSpec) -> float:
        if model.expected_output_tokens is not None:
            return float(model.expected_output_tokens)
        learned = self.learned_output_tokens.get(model.checkpoint_label)
        if learned is not None and learned > 0:
            return float(learned)
        return float(self.pool.routing.default_output_tokens)

    def expected_cost(self, model: ModelSpec, input_tokens: float) -> float:
        """Expected USD of one request with ``input_tokens`` in and the model's expected answer out."""
        return price_usd(model, input_tokens, self.output_tokens(model))

    def costs(self, input_tokens: float) -> dict[str, float]:
        """Expected USD per request for every pool model, in pool order."""
        return {m.name: self.expected_cost(m, input_tokens) for m in self.pool.models}

    def baseline(self, configured: str | None = None) -> ModelSpec:
        """The configured baseline model, else the priciest at a 1K-token prompt and its expected answer."""
        if configured is not None:
            try:
                return self.pool.model(configured)
            except KeyError:
                raise ConfigError(
                    f"baseline_model {configured!r} is not in the pool {list(self.pool.names)}"
                ) from None
        return max(self.pool.models, key=lambda m: self.expected_cost(m, REFERENCE_INPUT_TOKENS))
