"""Helpers for the collect tests: the running fake pool, and what `ladder collect` does, in-process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collect_support import world
from collect_support.pool_server import FakePool
from ladder.core.pool import load_pool
from ladder.training.collect import AnswerStore, CallSettings, CollectReport, Question, collect, select_models

FAST = CallSettings(max_tokens=64, timeout_s=2.0, retries=3, backoff_s=0.01, max_backoff_s=0.05)


@dataclass
class Loopback:
    """The running fake pool and a pool file pointing at it."""

    pool: FakePool
    url: str
    pool_file: Path

    def reset(self) -> None:
        self.pool.answer = world.answer
        self.pool.calls.clear()
        self.pool.times.clear()
        self.pool.faults.clear()
        self.pool.bodies.clear()
        self.pool.no_logprobs.clear()
        self.pool.delay_s = 0.0
        self.pool.released.clear()


def run_collect(
    store_path: Path | str,
    pool_file: Path,
    questions: list[Question],
    models: list[str] | None = None,
    settings: CallSettings = FAST,
    **kwargs: Any,
) -> tuple[CollectReport, AnswerStore]:
    """What `ladder collect` does, in-process."""
    config = load_pool(pool_file)
    store = AnswerStore(store_path, create=True)
    store.bind_pool(config, str(pool_file))
    store.add_questions(questions)
    chosen = select_models(config, models or list(world.ANSWERERS))
    report = asyncio.run(collect(store, chosen, questions, settings, **kwargs))
    return report, store
