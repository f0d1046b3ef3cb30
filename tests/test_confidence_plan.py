"""The servable calibrated plan: reading a self-check, fitting a plan from training rows, playing it as served,
and writing it into a pool file that loads it back."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from ladder.core.answers import agreement
from ladder.core.confidence_plan import CalibratedPlan
from ladder.core.logprobs import TokenLogprob, token_logprobs, yes_logprob
from ladder.core.pool import load_pool
from ladder.core.rung import RungSettings
from ladder.training.confidence_plans import StateSettings
from ladder.training.confidence_states import READS
from ladder.training.dataset import RoutingData
from ladder.training.pool_edit import rewrite_cascade
from ladder.training.served_plan import fit_served_plan, play_plan, recorded_inputs

MODELS = ["small", "mid", "big"]


def test_yes_is_read_from_the_first_tokens_top_logprobs() -> None:
    tokens = token_logprobs(
        {
            "content": [
                {
                    "token": "Yes",
                    "logprob": math.log(0.6),
                    "top_logprobs": [
                        {"token": "Yes", "logprob": math.log(0.6)},
                        {"token": " yes", "logprob": math.log(0.1)},
                        {"token": "No", "logprob": math.log(0.3)},
                    ],
                }
            ]
        }
    )
    assert yes_logprob(tokens) == pytest.approx(math.log(0.7))
    assert yes_logprob([TokenLogprob("No", 0.0, (("No", 0.0),))]) == -math.inf  # a certain no
    assert yes_logprob([TokenLogprob(" no", -0.2, ((" no", -0.2), ("Maybe", -1.8)))]) == -math.inf
    # neither a yes nor a no among the first token and its alternatives: nothing was read
    assert yes_logprob([TokenLogprob("The", -0.1, (("The", -0.1), ("I", -2.5)))]) is None
    assert yes_logprob(None) is None and yes_logprob(()) is None


def test_agreement_settles_short_answers_and_overlaps_free_text() -> None:
    assert agreement("(B)", "The answer is B.") == 1.0 and agreement("Paris", "Lyon") == -1.0
    long_a = "the capital city of France is Paris on the Seine river"
    long_b = "Paris is the capital city of France and its largest town"
    assert -1.0 < agreement(long_a, long_b) < 1.0


def synthetic(n: int = 240, seed: int = 0) -> RoutingData:
    """Letters (answer logprobs, free) on half the questions, free text (paid self-checks) on the rest; the
    bigger model is right more often, and confidences track correctness."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < [0.4, 0.6, 0.8]).astype(float)
    letter = np.arange(n) % 2 == 0
    answers = np.where(
        letter[:, None],
        np.where(labels == 1, "A", "B"),
        np.where(labels == 1, "Paris", np.array(["Lyon", "Nice", "Metz"])[rng.integers(0, 3, (n, 3))]),
    ).astype(object)
    lp = np.clip(np.log(np.clip(0.5 * labels + 0.4 * rng.random((n, 3)), 1e-6, 1)), -20, 0)
    kinds = np.where(letter[:, None], "answer_logprob", "self_check_logprob").repeat(3, axis=1)
    return RoutingData.from_labels(
        [f"q{i}" for i in range(n)],
        [f"question {i}" for i in range(n)],
        MODELS,
        labels,
        costs=np.tile([1e-4, 1e-3, 1e-2], (n, 1)),
        answers=answers,
        answer_logprobs=lp,
        confidence_kinds=kinds,
        confidence_costs=np.where(letter[:, None], 0.0, [[5e-5, 5e-4, 5e-3]]),
        splits=["train"] * n,
    )


def test_a_fitted_plan_is_played_as_served_and_pays_each_call(tmp_path: Path) -> None:
    data = synthetic()
    router_p = np.tile([0.4, 0.6, 0.8], (len(data), 1))
    setting = StateSettings(RungSettings(30.0, 0.0, 3), READS.index("cheaper"))
    plan = fit_served_plan(data, router_p, setting)
    assert [m.self_check for m in plan.models] == [True, False, False]  # "cheaper": all but the two dearest
    assert len(plan.states) == 7
    inputs = recorded_inputs(data)
    played = play_plan(plan, router_p, *inputs)
    rows = np.arange(len(data))
    asked = played.order >= 0
    assert asked[:, 0].all() and asked.sum(axis=1).max() >= 2  # escalates on some questions
    answer_cost, check_cost = inputs[3], inputs[4]
    paid = sum(
        np.where(asked[:, s], answer_cost[rows, np.maximum(played.order[:, s], 0)], 0.0)
        for s in range(played.order.shape[1])
    ) + (played.checked * check_cost).sum(axis=1)
    np.testing.assert_allclose(played.cost, paid)
    letter = np.arange(len(data)) % 2 == 0
    small = (played.order == 0).any(axis=1)
    assert small.any() and not played.checked[letter].any()
    assert played.checked[~letter & small, 0].all() and not played.checked[:, 1:].any()
    # calibrated and returned: more accurate than the first rung alone
    assert data.labels[rows, played.returned].mean() > data.labels[:, 0].mean()

    pool = tmp_path / "pool.yaml"
    pool.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "routing": {"tolerance": 0.05},
                "models": [
                    {
                        "name": m,
                        "upstream": {"base_url": "http://127.0.0.1:9/v1", "model": m},
                        "price": {"input_per_1m": 1.0, "output_per_1m": 2.0},
                        "context_window": 4096,
                    }
                    for m in MODELS
                ],
            }
        )
    )
    _, text = rewrite_cascade(pool, {"logprobs": True, "plan": plan.model_dump(mode="json")})
    pool.write_text(text)
    loaded = load_pool(pool).routing.cascade.plan
    assert isinstance(loaded, CalibratedPlan) and loaded == plan
