"""A two-question, three-model routing table for the cascade tests, varied by what each test reads."""

from __future__ import annotations

import numpy.typing as npt

from ladder.training.dataset import RoutingData


def two_questions(
    labels: npt.ArrayLike, answers: npt.ArrayLike, confidence_kinds: npt.ArrayLike, confidence_costs: npt.ArrayLike
) -> RoutingData:
    """Questions ``a`` and ``b`` to models small, mid and big (1e-3 / 1e-2 / 1e-1 USD, 100 / 200 / 400 ms a
    call), each answer's logprob the same in every such table: small sure on ``a`` and unsure on ``b``, mid the
    other way round, big sure on both."""
    return RoutingData.from_labels(
        ["a", "b"],
        ["A?", "B?"],
        ["small", "mid", "big"],
        labels,
        costs=[[1e-3, 1e-2, 1e-1]] * 2,
        answers=answers,
        answer_logprobs=[[-0.01, -2.0, -0.01], [-3.0, -0.1, -0.01]],
        confidence_kinds=confidence_kinds,
        confidence_costs=confidence_costs,
        latencies_ms=[[100, 200, 400]] * 2,
    )
