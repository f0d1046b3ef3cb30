"""A prompt gets the same scores and decision whatever it is batched with: through the router's batches and
through the gateway's batching scorer, on the shipped (per-token) int8 encoder, for generated multilingual
prompts; and how a per-tensor int8 graph built before stays invariant (its rows run alone)."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnxruntime.quantization import QuantType, quantize_dynamic

from ladder.core.encoder import TOKENIZER_FILE, EncoderInfo, OnnxEncoder
from ladder.core.pool import load_pool
from ladder.core.router import Router, default_pool_path
from ladder.export.encoder_build import build_encoder
from ladder.export.onnx_export import quiet_logs
from ladder.gateway.batcher import ScoreBatcher, score_texts

BOUND = 1e-4  # max |P(correct) batched - P(correct) alone|
SENTENCES = (
    "the committee reviewed quarterly figures and asked why the integral of x squared diverges ?",
    "prove that there are infinitely many primes . def merge ( a , b ) : return sorted ( a + b )",
    "東京 から 大阪 まで 新幹線 で 何時間 かかります か 。 猫 が 窓 の そば で 寝て いる",
    "请 解释 一下 量子 纠缠 的 基本 原理 ， 用 Python 写 一个 快速 排序 。",
    "Quelle est la capitale de l'Australie ? Wie viele Tage hat ein Schaltjahr ?",
)
WORDS = tuple(word for sentence in SENTENCES for word in sentence.split())
prompts = st.one_of(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=400).map(" ".join),  # up to past 512 tokens
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=300),
).filter(lambda text: bool(text.strip()))


@dataclass(frozen=True)
class Placed:
    """A target prompt and a batch holding it among other prompts at ``index``."""

    target: str
    batch: list[str]
    index: int


def _place(case: tuple[str, list[str], int]) -> Placed:
    """The case's target prompt placed among the others at the drawn position."""
    target, others, position = case
    index = position % (len(others) + 1)
    return Placed(target, [*others[:index], target, *others[index:]], index)


batches = st.tuples(prompts, st.lists(prompts, min_size=1, max_size=7), st.integers(min_value=0)).map(_place)
SLOW = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def _router(batch_invariant: bool = True) -> Router:
    pool = load_pool(default_pool_path())
    routing = pool.routing.model_copy(update={"batch_invariant": batch_invariant})
    return Router.from_pool(pool.model_copy(update={"routing": routing}), threads=1)


@pytest.fixture(scope="module")
def router() -> Router:
    return _router()


@SLOW
@given(batches)
def test_router_batches_do_not_move_a_prompts_decision(router: Router, case: Placed) -> None:
    alone = router.route(case.target).decision
    together = router.route_many(case.batch)[case.index].decision
    assert together.model == alone.model and together.reason == alone.reason
    np.testing.assert_allclose(
        [c.p_correct for c in together.candidates],
        [c.p_correct for c in alone.candidates],
        atol=BOUND,
        rtol=0,
    )


async def _through_the_batcher(router: Router, texts: list[str]) -> tuple[list[np.ndarray], list[int]]:
    sizes: list[int] = []
    batcher = ScoreBatcher(functools.partial(score_texts, router), max_batch=32, on_batch=sizes.append)
    await batcher.start()
    try:
        scored = await asyncio.gather(*(batcher.score(t) for t in texts))
    finally:
        await batcher.close()
    return [s.p_correct for s in scored], sizes


@SLOW
@given(batches)
def test_the_gateways_batching_scorer_does_not_move_a_prompts_decision(router: Router, case: Placed) -> None:
    scores, sizes = asyncio.run(_through_the_batcher(router, case.batch))
    assert max(sizes) > 1, "the concurrent prompts were not batched together"
    (alone,) = score_texts(router, [case.target])
    np.testing.assert_allclose(scores[case.index], alone.p_correct, atol=BOUND, rtol=0)
    options = router.default_options()
    assert (
        router.decide_scores(scores[case.index], 100, options).model
        == router.decide_scores(alone.p_correct, 100, options).model
    )


def test_the_shipped_int8_encoder_batches(router: Router) -> None:
    """Per-token int8 graphs are invariant by construction, so the scorer batches instead of running rows
    alone (the tests above hold through real batches)."""
    encoder = router.scorer.encoder  # type: ignore[attr-defined]
    assert encoder.info.int8_activations == "per_token" and not encoder.per_row


@pytest.fixture(scope="module")
def per_tensor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An encoder folder as built before per-token graphs: int8 activations share one scale per tensor."""
    source = build_encoder("all-minilm-l6-v2")
    out = tmp_path_factory.mktemp("per-tensor-int8")
    EncoderInfo.load(source).model_copy(update={"int8_activations": "per_tensor"}).save(out)
    for name in (TOKENIZER_FILE, "encoder.onnx"):
        (out / name).symlink_to(source / name)
    with quiet_logs():
        quantize_dynamic(
            str(source / "encoder.onnx"),
            str(out / "encoder.int8.onnx"),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return out


def test_a_per_tensor_graph_runs_rows_alone_because_batching_would_move_them(per_tensor_dir: Path) -> None:
    """What per-token graphs prevent, and how older folders stay invariant: their rows run alone."""
    texts = ["What is the capital of Australia?", "東京から大阪まで新幹線で何時間かかりますか？" * 12, "ok"]
    default = OnnxEncoder(per_tensor_dir, "int8", threads=1)
    assert default.per_row
    batch = default.tokenizer.encode(texts)
    alone = np.vstack([default.embed(texts[i : i + 1]) for i in range(len(texts))])
    np.testing.assert_allclose(default.embed_ids(batch.input_ids, batch.attention_mask), alone, atol=1e-6)
    batched = OnnxEncoder(per_tensor_dir, "int8", threads=1, per_row=False)
    assert np.abs(batched.embed_ids(batch.input_ids, batch.attention_mask) - alone).max() > 1e-3


def test_the_triton_cpu_encoder_batches_per_token_rows(router: Router) -> None:
    """The cpu flavour's python-backend runner on the shipped graph: batched rows score as they do alone."""
    from ladder.export.triton_configs import RepoShape, encoder_config
    from ladder.export.triton_models.onnx_model import OnnxRunner

    assert 'key: "per_row"' in encoder_config(RepoShape("cpu", 384, 8), per_row=True)
    encoder = router.scorer.encoder  # type: ignore[attr-defined]
    path = encoder.directory / encoder.info.files.int8
    texts = ["What is the capital of Australia?", "東京から大阪まで新幹線で何時間かかりますか？" * 12]
    batch = router.tokenizer.encode(texts)
    alone = router.tokenizer.encode(texts[:1])
    requests = [
        {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask},
        {"input_ids": alone.input_ids, "attention_mask": alone.attention_mask},
    ]
    names = (["input_ids", "attention_mask"], ["embedding"])
    shared = OnnxRunner(path, *names, threads=1).run(requests)
    np.testing.assert_allclose(shared[0]["embedding"][0], shared[1]["embedding"][0], atol=1e-6)
