"""An asyncio micro-batcher: concurrent prompts are tokenised and scored together in one worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ladder.core.router import Router
from ladder.gateway.errors import OverloadedError, ScorerUnavailableError

DRAIN_ROUNDS = 3  # loop turns a busy batcher gives waiting requests before it closes a batch
RATE_WEIGHT = 0.2  # weight of the latest batch in the moving averages behind the scoring rate
LENGTH_RATIO = 2.0  # rows of a batch are padded together only while the longest is within 2x the shortest


@dataclass(frozen=True)
class Scored:
    """One prompt's pool-ordered P(correct) and what the encoder saw."""

    p_correct: np.ndarray
    routed_tokens: int
    truncated: bool


def score_texts(router: Router, texts: Sequence[str]) -> list[Scored]:
    """Tokenise a batch, group rows of similar length, pad each group to its longest, score it."""
    encoded = router.tokenizer.encode(list(texts))
    order = sorted(range(len(encoded)), key=lambda i: encoded.lengths[i])
    out: list[Scored | None] = [None] * len(encoded)
    start = 0
    while start < len(order):
        end = start + 1
        shortest = encoded.lengths[order[start]]
        while end < len(order) and encoded.lengths[order[end]] <= LENGTH_RATIO * shortest:
            end += 1
        rows = order[start:end]
        group = encoded.take(rows)
        scores = router.pool_scores(group.input_ids, group.attention_mask)
        for row, index in enumerate(rows):
            out[index] = Scored(scores[row], encoded.lengths[index], encoded.truncated[index])
        start = end
    return [s for s in out if s is not None]


# A queued prompt, its answer, and the context of the request that sent it.
_Entry = tuple[str, asyncio.Future[Scored], contextvars.Context]


class ScoreBatcher:
    """Collects requests while every scoring worker is busy, then scores them in one call per worker.

    Under load (the previous batch held several prompts) it also gives requests already on the sockets a few
    loop turns, and waits up to ``max_wait_s`` for more, to fill the batch; a lone request is never delayed.
    """

    def __init__(
        self,
        score: Callable[[Sequence[str]], list[Scored]],
        max_batch: int = 32,
        max_wait_s: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        workers: int = 1,
        max_queue: int = 256,
        max_queue_wait_s: float | None = None,
        retry_after_s: int = 1,
    ) -> None:
        self._score = score
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_queue_wait_s = max_queue_wait_s
        self.retry_after_s = retry_after_s
        self._prompts: float | None = None  # moving averages of a finished batch's prompts, and of the time
        self._seconds = 0.0  # since the previous batch finished: their ratio is the scoring rate
        self._last_done = 0.0
        self.max_wait_s = max_wait_s
        self.workers = workers
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Entry] | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_size = 0
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ladder-scorer")
        self._slots = asyncio.Semaphore(workers)
        self._inflight: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._task = asyncio.create_task(self._run(), name="ladder-score-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._inflight):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def waiting(self) -> int:
        """Prompts queued for a scoring worker (not counting the batches being scored)."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def queue_limit(self) -> int:
        """How many prompts may wait: ``max_queue``, or fewer when the measured scoring rate would make the
        last of them wait longer than ``max_queue_wait_s`` (never less than one batch)."""
        if self._prompts is None or self.max_queue_wait_s is None:
            return self.max_queue
        expected = int(self._prompts / max(self._seconds, 1e-6) * self.max_queue_wait_s)
        return min(self.max_queue, max(self.max_batch, expected))

    async def score(self, text: str) -> Scored:
        """Score one prompt, batched with whatever else is waiting; ``OverloadedError`` at once when
        ``max_queue`` prompts are already waiting (memory and latency stay bounded under overload)."""
        if self._queue is None or not self.running:
            raise ScorerUnavailableError("the scorer is not running")
        limit = self.queue_limit
        if self._queue.qsize() >= limit:
            raise OverloadedError(
                f"the gateway is overloaded ({limit} requests waiting to be routed); "
                f"retry after {self.retry_after_s} s",
                self.retry_after_s,
            )
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((text, future, contextvars.copy_context()))
        return await future

    async def _collect(self, queue: asyncio.Queue[_Entry]) -> list[_Entry]:
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        busy = self._last_size > 1  # a lone request (light load) is scored at once, never held back
        deadline = loop.time() + (self.max_wait_s if busy else 0.0)
        drain = DRAIN_ROUNDS if busy else 0
        while len(batch) < self.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            if drain > 0:  # busy: let the loop turn requests already on the sockets into queue entries
                drain -= 1
                await asyncio.sleep(0)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        self._last_size = len(batch)
        return [entry for entry in batch if not entry[1].done()]

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            await self._slots.acquire()  # a batch is only closed when a worker can take it at once
            try:
                batch = await self._collect(self._queue)
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            task = asyncio.create_task(self._score_batch(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _measure(self, prompts: int, started: float, now: float) -> None:
        """The rate all workers score at: prompts over the time since the previous batch finished (or since
        this one started, after idle time), so workers that share busy cores are not counted twice."""
        seconds = now - max(self._last_done, started)
        self._last_done = now
        if self._prompts is None:
            self._prompts, self._seconds = float(prompts), seconds
            return
        self._prompts += RATE_WEIGHT * (prompts - self._prompts)
        self._seconds += RATE_WEIGHT * (seconds - self._seconds)

    async def _score_batch(self, batch: list[_Entry]) -> None:
        loop = asyncio.get_running_loop()
        texts = [text for text, _, _ in batch]
        try:
            try:
                started = time.perf_counter()
                # The worker runs in the first request's context (its span: the traceparent sent to Triton).
                results = await loop.run_in_executor(self._executor, batch[0][2].run, self._score, texts)
                self._measure(len(texts), started, time.perf_counter())
            except Exception as exc:  # the scorer's own errors (ORT, tokenizer, Triton down) become one 503
                error = (
                    exc
                    if isinstance(exc, ScorerUnavailableError)
                    else ScorerUnavailableError(f"the scorer failed: {exc}")
                )
                if error is not exc:
                    error.__cause__ = exc
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                return
            for (_, future, _), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._slots.release()
