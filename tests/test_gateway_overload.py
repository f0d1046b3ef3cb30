"""Overload: a bounded scoring queue; past it, 429 with Retry-After at once, never an unbounded backlog."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from gateway_support.common import API_KEY, AUTH, UPSTREAM_KEY, UPSTREAM_KEY_ENV
from gateway_support.upstream import FakeUpstream

from ladder.bench.server_thread import ServerThread
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.batcher import ScoreBatcher, Scored
from ladder.gateway.errors import OverloadedError
from ladder.gateway.gateway import Gateway
from ladder.gateway.settings import load_settings

pytest_plugins = ["gateway_support.fixtures"]

WAIT_S = 20.0  # generous bound for a state to be reached on a loaded machine; never a timing assertion


class GatedScorer:
    """The real scorer behind a gate: a test holds it busy, then lets it go."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.labels = inner.labels  # type: ignore[attr-defined]
        self.gate = threading.Event()
        self.entered = threading.Event()

    def score_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        self.entered.set()
        if not self.gate.wait(WAIT_S):
            raise RuntimeError("the test never opened the gate")
        result: np.ndarray = self.inner.score_ids(input_ids, attention_mask)  # type: ignore[attr-defined]
        return result


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture()
def held(
    test_pool: Path, router: Router, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[str, Gateway, GatedScorer]]:
    """A gateway with one scoring worker, batches of one and room for two waiting requests."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    scorer = GatedScorer(router.scorer)
    gated = Router(router.pool, router.checkpoint, router.tokenizer, scorer)
    settings = load_settings(
        None,
        pool=test_pool,
        api_keys=[API_KEY],
        scorer_workers=1,
        batch_max_size=1,
        score_queue_max=2,
        overload_retry_after_s=3,
        audit_log=str(tmp_path / "audit.jsonl"),
    )
    app = create_app(settings, router=gated)
    with ServerThread(app) as server:
        try:
            yield server.url, app.state.gateway, scorer
        finally:
            scorer.gate.set()


def test_past_the_bound_the_gateway_answers_429_at_once(
    held: tuple[str, Gateway, GatedScorer], upstream: FakeUpstream
) -> None:
    url, gw, scorer = held
    chat = {"model": "ladder", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http, ThreadPoolExecutor(4) as pool:
        first = pool.submit(http.post, "/v1/chat/completions", json=chat)
        wait_for(scorer.entered.is_set, "the first request to reach the scorer")
        queued: list[Future[httpx.Response]] = [
            pool.submit(http.post, "/v1/route", json={"prompt": f"question {i}"}) for i in range(2)
        ]
        wait_for(lambda: gw.batcher.waiting == 2, "two requests to wait in the queue")

        # The scorer is still held: these answers come back without waiting for it.
        refused = http.post("/v1/chat/completions", json=chat)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
        assert refused.json() == {
            "error": {
                "message": refused.json()["error"]["message"],
                "type": "rate_limit_error",
                "param": None,
                "code": "overloaded",
            }
        }
        assert "overloaded" in refused.json()["error"]["message"]
        anthropic = http.post("/v1/messages", json={**chat, "max_tokens": 8})
        assert anthropic.status_code == 429 and anthropic.headers["retry-after"] == "3"
        assert anthropic.json()["error"]["type"] == "rate_limit_error"
        assert http.post("/v1/route", json={"prompt": "one more"}).status_code == 429
        assert not scorer.gate.is_set() and upstream.seen == []  # refused requests reach no upstream

        scorer.gate.set()
        assert first.result(WAIT_S).status_code == 200
        assert [f.result(WAIT_S).status_code for f in queued] == [200, 200]
        assert http.post("/v1/route", json={"prompt": "after the rush"}).status_code == 200
    assert upstream.count("vision-pro") + upstream.count("mid-cloud") + upstream.count("small-local") == 1
    # every request has its audit line, the three refused before any decision included
    gw.audit.close()
    assert gw.settings.audit_log is not None
    audit = [json.loads(line) for line in Path(gw.settings.audit_log).read_text().splitlines()]
    assert len(audit) == 7
    refused_lines = [a for a in audit if a["chosen_model"] is None]
    assert sorted(a["endpoint"] for a in refused_lines) == ["chat", "messages", "route"]
    assert all(a["status"] == 429 and a["error"] == "overloaded" for a in refused_lines)


def test_the_batcher_refuses_without_queueing() -> None:
    """The same bound without a server: a full queue raises at once and a refusal takes no place in it."""
    gate, entered = threading.Event(), threading.Event()

    def score(texts: Sequence[str]) -> list[Scored]:
        entered.set()
        gate.wait(WAIT_S)
        return [Scored(np.zeros(1), 1, False) for _ in texts]

    async def run() -> None:
        batcher = ScoreBatcher(score, max_batch=1, workers=1, max_queue=1, retry_after_s=5)
        await batcher.start()
        try:
            running = asyncio.create_task(batcher.score("a"))
            while not entered.is_set():
                await asyncio.sleep(0.001)
            waiting = asyncio.create_task(batcher.score("b"))
            while batcher.waiting < 1:
                await asyncio.sleep(0)
            for _ in range(3):
                with pytest.raises(OverloadedError) as caught:
                    await batcher.score("c")
                assert caught.value.retry_after_s == 5 and batcher.waiting == 1
            gate.set()
            assert len(await asyncio.gather(running, waiting)) == 2
            assert batcher.waiting == 0 and (await batcher.score("d")).routed_tokens == 1
        finally:
            gate.set()
            await batcher.close()

    asyncio.run(run())


def test_the_bound_follows_the_measured_scoring_rate() -> None:
    """With ``max_queue_wait_s``, no more requests wait than the scorer gets through in that time."""
    batcher = ScoreBatcher(lambda texts: [], max_batch=8, max_queue=1000, max_queue_wait_s=2.0)
    assert batcher.queue_limit == 1000  # nothing measured yet: the hard cap
    for i in range(50):  # back-to-back batches of 40 prompts, 0.1 s each: 400 prompts per second
        batcher._measure(40, started=100 + i * 0.1, now=100 + (i + 1) * 0.1)
    assert 790 <= batcher.queue_limit <= 800
    for i in range(50):  # two workers finishing 40 prompts every 0.05 s between them: 800 per second
        batcher._measure(40, started=106 + i * 0.05 - 0.1, now=106 + i * 0.05)
    assert batcher.queue_limit == 1000  # the hard cap
    slow = ScoreBatcher(lambda texts: [], max_batch=8, max_queue=1000, max_queue_wait_s=2.0)
    slow._measure(2, started=10.0, now=11.0)  # two prompts a second: one batch may wait, no fewer
    assert slow.queue_limit == 8
