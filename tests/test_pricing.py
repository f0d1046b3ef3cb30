"""One pricing function and one token estimate: the router's expected costs, the gateway's candidate costs
and baseline, and the training pipeline's cost matrix agree on the shipped default router."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from ladder.bench.server_thread import ServerThread
from ladder.core.pool import ModelSpec, load_pool
from ladder.core.pricing import REFERENCE_INPUT_TOKENS, Pricing, Usage, estimate_tokens, price_usd
from ladder.core.router import Router, default_pool_path
from ladder.gateway.app import create_app
from ladder.gateway.capabilities import prompt_tokens
from ladder.gateway.costs import answer_cost
from ladder.gateway.settings import load_settings
from ladder.training.costs import cost_matrix
from ladder.training.dataset import RoutingData

PROMPTS = ("東京から大阪まで新幹線で何時間かかりますか？ Answer in one sentence.", "Prove that 2 is prime.")


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.from_pool(load_pool(default_pool_path()), threads=1)


def _model(**update: object) -> ModelSpec:
    model = load_pool(default_pool_path()).models[0]
    return model.model_copy(update=update)


def test_price_counts_input_and_output_tokens() -> None:
    model = _model()
    model = model.model_copy(
        update={"price": model.price.model_copy(update={"input_per_1m": 1.0, "output_per_1m": 4.0})}
    )
    assert price_usd(model, 1000, 500) == pytest.approx(0.003)
    assert answer_cost(model, model, Usage(1000, 500)).cost_usd == pytest.approx(0.003)


def test_expected_output_tokens_come_from_the_pool_then_the_data_then_the_default() -> None:
    pool = load_pool(default_pool_path())
    model = pool.models[0]
    learned = {model.checkpoint_label: 91.5}
    assert Pricing(pool, learned).output_tokens(model) == 91.5
    assert Pricing(pool, {}).output_tokens(model) == pool.routing.default_output_tokens
    assert (
        Pricing(pool, {model.checkpoint_label: 0.0}).output_tokens(model)
        == pool.routing.default_output_tokens
    )
    pinned = model.model_copy(update={"expected_output_tokens": 7})
    assert Pricing(pool, learned).output_tokens(pinned) == 7


def test_one_token_estimate_for_routing_and_the_gateway() -> None:
    for text in (*PROMPTS, "x" * 4001, "混合 mixed テキスト"):
        body = {"messages": [{"role": "user", "content": text}]}
        assert prompt_tokens(body) == estimate_tokens(text)
    assert estimate_tokens("abcd" * 100) == 100 and estimate_tokens("日本語") == 3


def _repriced(tmp_path: Path) -> Path:
    """The default pool with llama-3.1-8b made output-heavy: it is the priciest at the output tokens the
    checkpoint learned for it (about 228), but not at the pool's default of 256 for every model."""
    data = yaml.safe_load(default_pool_path().read_text(encoding="utf-8"))
    for model in data["models"]:
        if model["name"] == "llama-3.1-8b":
            model["price"] = {"input_per_1m": 0.01, "output_per_1m": 12.0}
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_gateway_prices_and_picks_its_baseline_like_the_router(router: Router, tmp_path: Path) -> None:
    pool_path = _repriced(tmp_path)
    pool = load_pool(pool_path)
    repriced = router.with_pool(pool)
    pricing = repriced.pricing
    priciest = max(pool.models, key=lambda m: pricing.expected_cost(m, REFERENCE_INPUT_TOKENS))
    assert priciest.name == "llama-3.1-8b"
    assert Pricing(pool).baseline().name != priciest.name  # learned output tokens decide it
    settings = load_settings(None, pool=pool_path, auth_disabled=True)
    with ServerThread(create_app(settings, router=repriced)) as server:
        replies = [
            httpx.post(
                f"{server.url}/v1/route",
                json={"model": "ladder", "messages": [{"role": "user", "content": text}]},
                timeout=30,
            )
            for text in PROMPTS
        ]
    for text, reply in zip(PROMPTS, replies, strict=True):
        assert reply.status_code == 200, reply.text
        body = reply.json()
        tokens = estimate_tokens(text)
        assert body["requirements"]["input_tokens"] == tokens
        expected = repriced.costs(tokens)
        assert {c["name"]: c["expected_cost_usd"] for c in body["candidates"]} == pytest.approx(
            expected, rel=1e-12
        )
        assert body["baseline_model"] == priciest.name
        assert body["baseline_expected_cost_usd"] == pytest.approx(expected[priciest.name], rel=1e-12)
        decision = repriced.route(text).decision
        assert decision.chosen.expected_cost_usd == pytest.approx(expected[decision.model], rel=1e-12)


def test_training_costs_are_the_routers_for_the_same_output_tokens(router: Router) -> None:
    """Training prices questions with the data's mean output tokens, which the checkpoint then stores."""
    pool = router.pool
    labels = [m.checkpoint_label for m in pool.models]
    learned = router.checkpoint.manifest.expected_output_tokens
    out = np.array([[learned.get(label, np.nan) for label in labels]] * len(PROMPTS))
    data = RoutingData.from_labels(
        [f"q{i}" for i in range(len(PROMPTS))], PROMPTS, labels, np.ones(out.shape), output_tokens=out
    )
    costs = cost_matrix(data, list(pool.names), pool, labels)
    for row, text in zip(costs, PROMPTS, strict=True):
        assert row == pytest.approx(list(router.costs(estimate_tokens(text)).values()), rel=1e-6)
