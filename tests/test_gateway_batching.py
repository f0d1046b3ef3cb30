"""Scoring batches concurrent requests: one scorer call serves many prompts, each gets its own row."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from gateway_support.pool import NAMES

from ladder.core.router import Router
from ladder.gateway.batcher import ScoreBatcher, Scored, score_texts
from ladder.gateway.errors import ScorerUnavailableError

pytest_plugins = ["gateway_support.fixtures"]


class GatedScorer:
    """Scores ``len(text)``; the first call waits for a gate so that the others queue up behind it."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()

    def __call__(self, texts: Sequence[str]) -> list[Scored]:
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.gate.wait(timeout=10)
        return [Scored(np.array([float(len(t))]), len(t), False) for t in texts]


async def _score_many(batcher: ScoreBatcher, scorer: GatedScorer, texts: list[str]) -> list[Scored]:
    await batcher.start()
    try:
        first = asyncio.create_task(batcher.score("warm-up"))
        while not scorer.calls:  # the first batch is running in the worker thread
            await asyncio.sleep(0.001)
        rest = [asyncio.create_task(batcher.score(t)) for t in texts]
        await asyncio.sleep(0)  # every request is queued
        scorer.gate.set()
        await first
        return list(await asyncio.gather(*rest))
    finally:
        await batcher.close()


def test_requests_arriving_while_the_scorer_is_busy_share_one_call() -> None:
    scorer = GatedScorer()
    texts = ["x" * n for n in range(1, 41)]
    results = asyncio.run(_score_many(ScoreBatcher(scorer, max_batch=32), scorer, texts))
    assert [r.p_correct[0] for r in results] == [float(len(t)) for t in texts]  # each gets its own row
    assert [len(call) for call in scorer.calls] == [1, 32, 8]


def test_several_workers_score_batches_at_once() -> None:
    gate = threading.Event()
    calls: list[int] = []

    def blocking(texts: Sequence[str]) -> list[Scored]:
        calls.append(len(texts))
        gate.wait(timeout=10)
        return [Scored(np.array([float(len(t))]), len(t), False) for t in texts]

    async def run() -> list[Scored]:
        batcher = ScoreBatcher(blocking, max_batch=32, workers=2)
        await batcher.start()
        try:
            first = [asyncio.create_task(batcher.score("a"))]
            while len(calls) < 1:
                await asyncio.sleep(0.001)
            first.append(asyncio.create_task(batcher.score("bb")))
            while len(calls) < 2:  # the second batch started while the first is still being scored
                await asyncio.sleep(0.001)
            rest = [asyncio.create_task(batcher.score("x" * n)) for n in range(1, 41)]
            await asyncio.sleep(0)
            gate.set()
            return list(await asyncio.gather(*first, *rest))
        finally:
            await batcher.close()

    results = asyncio.run(run())
    assert [r.p_correct[0] for r in results] == [1.0, 2.0, *map(float, range(1, 41))]
    assert calls[:2] == [1, 1] and sum(calls) == 42 and max(calls) <= 32


def test_scorer_failures_become_503_for_the_whole_batch() -> None:
    def broken(texts: Sequence[str]) -> list[Scored]:
        raise RuntimeError("onnxruntime exploded")

    async def run() -> None:
        batcher = ScoreBatcher(broken)
        await batcher.start()
        try:
            with pytest.raises(ScorerUnavailableError, match="exploded"):
                await batcher.score("hello")
        finally:
            await batcher.close()
        with pytest.raises(ScorerUnavailableError):
            await batcher.score("after close")

    asyncio.run(run())


def test_batched_scores_match_one_at_a_time(router: Router) -> None:
    texts = ["What is 2 + 2?", "Explain the French revolution in detail. " * 30, "Translate 'cat' to German."]
    batched = score_texts(router, texts)
    for text, scored in zip(texts, batched, strict=True):
        alone = router.route(text).decision
        expected = np.array([c.p_correct for c in alone.candidates])
        np.testing.assert_allclose(scored.p_correct, expected, atol=2e-3)
        assert scored.p_correct.shape == (len(NAMES),)
    assert batched[1].routed_tokens > batched[0].routed_tokens
