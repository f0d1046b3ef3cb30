"""``ladder.gateway.triton_scorer``: Triton's answers, the configured fallbacks, and a Triton crash mid-traffic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import triton_helpers as th

from ladder.core.loopback import free_port
from ladder.gateway.errors import ScorerUnavailableError
from ladder.gateway.triton_scorer import TritonScorer, TritonScorerSettings

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
TOLERANCE = 1e-4


def _batch(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    encoded = th.tokenizer().encode([text])
    expected = th.embedded_scorer().score_ids(encoded.input_ids, encoded.attention_mask)
    return encoded.input_ids, encoded.attention_mask, expected


def _nowhere(**kwargs: object) -> TritonScorerSettings:
    return TritonScorerSettings(url=f"127.0.0.1:{free_port()}", timeout_s=0.5, **kwargs)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_down_at_start_with_error_mode_raises_503_error() -> None:
    scorer = TritonScorer(th.LABELS, _nowhere(on_unavailable="error"))
    await scorer.start()
    try:
        assert not scorer.up
        ids, mask, _ = _batch("hello")
        with pytest.raises(ScorerUnavailableError, match="unavailable"):
            await scorer.score_ids_async(ids, mask)
    finally:
        await scorer.close()


@pytest.mark.asyncio
async def test_default_model_mode_makes_only_that_model_able() -> None:
    scorer = TritonScorer(th.LABELS, _nowhere(on_unavailable="default_model", default_model="medium-model"))
    await scorer.start()
    try:
        ids, mask, _ = _batch("hello")
        np.testing.assert_array_equal(await scorer.score_ids_async(ids, mask), [[0.0, 1.0, 0.0]])
    finally:
        await scorer.close()


def test_settings_refuse_inconsistent_fallbacks() -> None:
    with pytest.raises(ValueError, match="default_model"):
        TritonScorerSettings(on_unavailable="default_model")
    with pytest.raises(ValueError, match="fallback"):
        TritonScorer(th.LABELS, TritonScorerSettings(on_unavailable="embedded"))
    with pytest.raises(ValueError, match="not one of"):
        TritonScorer(th.LABELS, TritonScorerSettings(on_unavailable="default_model", default_model="nope"))


@pytest.mark.asyncio
async def test_crash_mid_traffic_falls_back_then_recovers(tmp_path: Path) -> None:
    server = th.server_or_skip(th.cpu_repository(), log_path=tmp_path / "triton.log")
    settings = TritonScorerSettings(url=server.grpc_url, timeout_s=2.0, health_interval_s=0.2)
    scorer = TritonScorer(th.LABELS, settings, fallback=th.embedded_scorer())
    prompts = [_batch(text) for text in (th.PROMPTS["english"], th.PROMPTS["japanese"], th.PROMPTS["code"])]
    worst = 0.0
    stop = asyncio.Event()

    async def traffic() -> int:
        nonlocal worst
        calls = 0
        while not stop.is_set():
            ids, mask, expected = prompts[calls % len(prompts)]
            got = await scorer.score_ids_async(ids, mask)
            worst = max(worst, float(np.abs(got - expected).max()))
            calls += 1
            await asyncio.sleep(0.01)
        return calls

    try:
        await scorer.start()
        assert scorer.up
        task = asyncio.create_task(traffic())
        while scorer.counts["triton"] < 5:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(server.kill)  # Triton dies with requests in flight
        while scorer.counts["fallback"] < 5:
            await asyncio.sleep(0.05)
        assert not scorer.up and scorer.counts["failures"] >= 1
        before = scorer.counts["triton"]
        await asyncio.to_thread(server.start)  # same ports
        assert await scorer.wait_until_up(30), "the scorer did not return to Triton"
        while scorer.counts["triton"] < before + 5:
            await asyncio.sleep(0.05)
        stop.set()
        calls = await task
        assert calls == scorer.counts["triton"] + scorer.counts["fallback"]  # every call was answered
        assert scorer.counts["recoveries"] == 1
        assert worst <= TOLERANCE
        ids, mask, expected = prompts[0]
        got = await asyncio.to_thread(scorer.score_ids, ids, mask)  # the sync Scorer protocol, from a thread
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
    finally:
        stop.set()
        await scorer.close()
        server.stop()


@pytest.mark.asyncio
async def test_sync_call_inside_the_loop_is_refused() -> None:
    scorer = TritonScorer(th.LABELS, _nowhere(on_unavailable="error"))
    await scorer.start()
    try:
        ids, mask, _ = _batch("hello")
        with pytest.raises(RuntimeError, match="score_ids_async"):
            scorer.score_ids(ids, mask)
    finally:
        await scorer.close()


@pytest.mark.asyncio
async def test_default_router_decides_the_same_through_triton(tmp_path: Path) -> None:
    """The shipped router with its scorer swapped for Triton (cpu export of the default): same decisions."""
    from ladder.core.pool import load_pool
    from ladder.core.router import Router, default_pool_path
    from ladder.export.triton_repo import export_repository
    from ladder.gateway.triton_scorer import with_triton

    pool = load_pool(default_pool_path())
    if not (pool.routing.checkpoint / "manifest.json").is_file():
        pytest.skip(f"the shipped checkpoint is not built at {pool.routing.checkpoint}")
    th.require_encoder()
    repo = tmp_path / "model_repository"
    int8 = pool.routing.encoder_variant == "int8"
    export_repository(pool.routing.checkpoint, repo, flavour="cpu", int8=int8, log=lambda _: None)
    server = th.server_or_skip(repo, log_path=tmp_path / "triton.log")
    embedded = Router.from_pool(pool)
    triton_router, scorer = with_triton(
        embedded, TritonScorerSettings(url=server.grpc_url, on_unavailable="error")
    )
    try:
        await scorer.start()
        options = embedded.default_options()
        for text in th.PROMPTS.values():
            here = embedded.route(text, options).decision
            there = (await asyncio.to_thread(triton_router.route, text, options)).decision
            assert there.model == here.model
            for a, b in zip(here.candidates, there.candidates, strict=True):
                assert abs(a.p_correct - b.p_correct) <= TOLERANCE
        assert scorer.counts["triton"] == len(th.PROMPTS) and scorer.counts["fallback"] == 0
    finally:
        await scorer.close()
        server.stop()
