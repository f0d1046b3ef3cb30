"""The embedded router on the shipped default: no PyTorch at routing time, batch = single, budgets kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ladder.core.errors import ConfigWarning
from ladder.core.policy import DecisionOptions, PolicyName
from ladder.core.pool import load_pool
from ladder.core.router import Router, default_pool_path
from tests.support import REPO

PROMPTS = [
    "What is the capital of Australia?",
    "Derive the closed form of the sum of the first n squares.",
    "次の文を英語に翻訳してください：猫が窓のそばで寝ている。",
    "用Python写一个快速排序。",
    "def f(x):\n    return x ** 2\n# what does f(3) return?",
]


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.from_pool(load_pool(default_pool_path()))


def test_routing_imports_no_torch() -> None:
    code = (
        "import sys; from ladder.core.pool import load_pool; from ladder.core.router import Router, default_pool_path;"
        "r = Router.from_pool(load_pool(default_pool_path())); r.route('hello there');"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_a_batch_scores_like_single_requests(variant: str) -> None:
    """Both variants are batch-invariant by default (int8 runs each row alone); see test_batch_invariance."""
    pool = load_pool(default_pool_path())
    pool = pool.model_copy(update={"routing": pool.routing.model_copy(update={"encoder_variant": variant})})
    if variant == "int8":
        router = Router.from_pool(pool)
    else:  # the shipped checkpoint was trained on the int8 encoder: serving it on fp32 says so
        with pytest.warns(ConfigWarning, match="trained and evaluated on the int8 encoder"):
            router = Router.from_pool(pool)
    batch = router.route_many(PROMPTS)
    for prompt, together in zip(PROMPTS, batch, strict=True):
        alone = router.route(prompt)
        p_alone = [c.p_correct for c in alone.decision.candidates]
        p_together = [c.p_correct for c in together.decision.candidates]
        np.testing.assert_allclose(p_alone, p_together, atol=1e-5)
        assert alone.decision.model == together.decision.model


def test_prices_are_read_at_decision_time(router: Router) -> None:
    cheap = router.route(PROMPTS[0], DecisionOptions(tolerance=0.0))
    top = cheap.decision.model
    repriced_models = tuple(
        m.model_copy(update={"price": m.price.model_copy(update={"input_per_1m": 1e3, "output_per_1m": 1e3})})
        if m.name == top
        else m
        for m in router.pool.models
    )
    repriced = router.with_pool(router.pool.model_copy(update={"models": repriced_models}))
    after = repriced.route(PROMPTS[0], DecisionOptions(tolerance=0.2)).decision
    assert after.model != top
    before_cost = next(c for c in cheap.decision.candidates if c.name == top).expected_cost_usd
    assert next(c for c in after.candidates if c.name == top).expected_cost_usd > 100 * before_cost


def test_budget_policy_keeps_reference_traffic_under_the_target(router: Router, tmp_path: Path) -> None:
    text = default_pool_path().read_text()
    text = text.replace("policy: cheapest", "policy: budget\n  budget_per_1k: 0.1")
    (tmp_path / "pool.yaml").write_text(text)
    budget = router.with_pool(load_pool(tmp_path / "pool.yaml"))
    decisions = budget.route_many(PROMPTS)
    assert all(d.decision.policy is PolicyName.CHEAPEST for d in decisions)
    tolerance = decisions[0].decision.tolerance
    assert 0 < tolerance <= 1
    reference = budget.checkpoint.reference_p
    assert len(reference) > 100


def test_fused_head_scores_as_the_two_graphs_in_turn(router: Router) -> None:
    """The router runs the head fused onto the encoder's graph: the same P(correct) as the encoder's embedding
    fed to the head's own session, for a batch of mixed lengths and scripts, and one row at a time."""
    from ladder.core.encoder import OnnxEncoder
    from ladder.core.head import OnnxHead
    from ladder.core.scoring import EmbeddedScorer

    scorer = router.scorer
    assert isinstance(scorer, EmbeddedScorer) and scorer.encoder.has_head
    encoder = scorer.encoder
    plain = OnnxEncoder(encoder.directory, encoder.variant, per_row=encoder.per_row)
    head = OnnxHead(router.checkpoint.head_path)
    encoded = router.tokenizer.encode(PROMPTS)
    fused = encoder.score_ids(encoded.input_ids, encoded.attention_mask)
    apart = head.predict(plain.embed_ids(encoded.input_ids, encoded.attention_mask))
    assert fused.shape == (len(PROMPTS), len(router.checkpoint.models))
    np.testing.assert_allclose(fused, apart, atol=1e-6)
    one = router.tokenizer.encode(PROMPTS[2:3])
    np.testing.assert_allclose(encoder.score_ids(one.input_ids, one.attention_mask)[0], fused[2], atol=1e-6)
    np.testing.assert_array_equal(
        encoder.embed_ids(encoded.input_ids, encoded.attention_mask),
        plain.embed_ids(encoded.input_ids, encoded.attention_mask),
    )
    with pytest.raises(ValueError, match="no fused head"):
        plain.score_ids(encoded.input_ids, encoded.attention_mask)
    empty = encoder.score_ids(np.zeros((0, 4), dtype=np.int64), np.zeros((0, 4), dtype=np.int64))
    assert empty.shape == (0, len(router.checkpoint.models))


def test_a_head_that_does_not_fit_the_encoder_is_refused(router: Router, tmp_path: Path) -> None:
    """A file that is not an ONNX graph fails to fuse with a CheckpointError naming it."""
    from ladder.core.encoder import OnnxEncoder
    from ladder.core.errors import CheckpointError
    from ladder.core.scoring import EmbeddedScorer

    scorer = router.scorer
    assert isinstance(scorer, EmbeddedScorer)
    bogus = tmp_path / "head.onnx"
    bogus.write_bytes(b"not an onnx graph")
    with pytest.raises(CheckpointError, match=r"head\.onnx: cannot fuse this head"):
        OnnxEncoder(scorer.encoder.directory, scorer.encoder.variant, head=bogus)


def test_a_head_that_cannot_be_fused_scores_unfused_with_a_warning(router: Router, tmp_path: Path) -> None:
    """A head saved at another ONNX IR version than the encoder cannot be merged into its graph: the router
    warns and runs the two graphs in turn, with the same scores."""
    import json
    import shutil

    import onnx

    from ladder.core.checkpoint import sha256_file

    pool = load_pool(default_pool_path())
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(router.checkpoint.directory, checkpoint)
    head = onnx.load(str(checkpoint / "head.onnx"))
    head.ir_version += 1
    onnx.save(head, str(checkpoint / "head.onnx"))
    manifest = json.loads((checkpoint / "manifest.json").read_text(encoding="utf-8"))
    manifest["head_sha256"] = sha256_file(checkpoint / "head.onnx")
    (checkpoint / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    moved = pool.model_copy(update={"routing": pool.routing.model_copy(update={"checkpoint": checkpoint})})
    with pytest.warns(ConfigWarning, match="two graphs in turn"):
        unfused = Router.from_pool(moved)
    assert not unfused.scorer.encoder.has_head  # type: ignore[attr-defined]
    encoded = router.tokenizer.encode(PROMPTS)
    np.testing.assert_allclose(
        unfused.pool_scores(encoded.input_ids, encoded.attention_mask),
        router.pool_scores(encoded.input_ids, encoded.attention_mask),
        atol=1e-6,
    )
