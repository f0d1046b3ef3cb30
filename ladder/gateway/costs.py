"""What an answer cost (usage tokens x prices) and what the baseline model would have charged for it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ladder.core.pool import ModelSpec
from ladder.core.pricing import Pricing, Usage, estimate_tokens, price_usd


@dataclass(frozen=True)
class Cost:
    """An answer's cost and its baseline's, in USD."""

    cost_usd: float
    baseline_model: str
    baseline_cost_usd: float

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "savings_usd": self.savings_usd}


def estimated_usage(input_tokens: int, completion_text: str) -> Usage:
    """Usage for a stream whose upstream reported none: the routing estimate in, the streamed text out."""
    return Usage(input_tokens, estimate_tokens(completion_text) if completion_text else 0)


def usage_cost(model: ModelSpec, usage: Usage) -> float:
    return price_usd(model, usage.prompt_tokens, usage.completion_tokens)


def baseline_model(pricing: Pricing, configured: str | None) -> ModelSpec:
    """The configured baseline, else the priciest model (``ladder.core.pricing.Pricing.baseline``)."""
    return pricing.baseline(configured)


def answer_cost(model: ModelSpec, baseline: ModelSpec, usage: Usage) -> Cost:
    return Cost(usage_cost(model, usage), baseline.name, usage_cost(baseline, usage))
