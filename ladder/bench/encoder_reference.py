"""The bare encoder's batched throughput, the reference `ladder bench gateway` measures the gateway against."""

from __future__ import annotations

import itertools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ladder.core.encoder import OnnxEncoder
from ladder.core.router import Router
from ladder.core.scoring import EmbeddedScorer
from ladder.gateway.settings import available_cpus


@dataclass(frozen=True)
class EncoderSetting:
    """One way to run the bare encoder on copies of a prompt: ONNX Runtime threads (None: its default),
    each row alone or the batch at once, rows per call, and calls running in parallel (one per CPU)."""

    threads: int | None
    per_row: bool
    batch: int
    parallel: int

    def describe(self) -> dict[str, object]:
        return {"threads": self.threads, "per_row": self.per_row, "batch": self.batch, "parallel": self.parallel}


@dataclass(frozen=True)
class Throughput:
    """Rows per second over a measured stretch, and the process CPU seconds it took per row."""

    rps: float
    cpu_ms_per_row: float


class EncoderReference:
    """The bare encoder on copies of one prompt, loaded once per setting (the gateway's own encoder folder)."""

    def __init__(self, router: Router, prompt: str) -> None:
        scorer = router.scorer
        if not isinstance(scorer, EmbeddedScorer):
            raise TypeError("bench gateway measures the embedded scorer")
        self.directory: Path = scorer.encoder.directory
        self.variant = scorer.encoder.variant
        self.default_per_row = scorer.encoder.per_row
        self.encoded = router.tokenizer.encode([prompt])
        self._encoders: dict[tuple[int | None, bool], OnnxEncoder] = {}

    def settings(self, batch_sizes: tuple[int, ...]) -> list[EncoderSetting]:
        """Every setting the sweep tries: default or one thread, rows alone or batched (where the gateway's
        encoder may batch), each batch size; single-threaded calls also one per CPU in parallel."""
        workers = available_cpus()
        out = []
        for threads, per_row in itertools.product((None, 1), sorted({self.default_per_row, False})):
            for size in batch_sizes:
                out.append(EncoderSetting(threads, per_row, size, 1))
                if threads == 1 and workers > 1:
                    out.append(EncoderSetting(threads, per_row, size, workers))
        return out

    def measure(self, setting: EncoderSetting, calls: int) -> Throughput:
        """Run ``calls`` calls per parallel worker (after one unmeasured call each)."""
        encoder = self._encoder(setting.threads, setting.per_row)
        ids = np.repeat(self.encoded.input_ids, setting.batch, axis=0)
        mask = np.repeat(self.encoded.attention_mask, setting.batch, axis=0)

        def run(times: int) -> None:
            for _ in range(times):
                encoder.embed_ids(ids, mask)

        with ThreadPoolExecutor(setting.parallel) as pool:
            list(pool.map(run, [1] * setting.parallel))
            cpu, started = time.process_time(), time.perf_counter()
            for future in [pool.submit(run, calls) for _ in range(setting.parallel)]:
                future.result()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rows = setting.parallel * calls * setting.batch
        return Throughput(rows / seconds, cpu / rows * 1000)

    def best(self, batch_sizes: tuple[int, ...], calls: int = 5) -> tuple[EncoderSetting, float]:
        """The sweep: the setting with the highest throughput, and that throughput."""
        measured = [(self.measure(setting, calls).rps, setting) for setting in self.settings(batch_sizes)]
        rps, setting = max(measured, key=lambda pair: pair[0])
        return setting, rps

    def stretch(self, setting: EncoderSetting, rps: float, seconds: float) -> Throughput:
        """Measure ``setting`` for about ``seconds``, given a recent estimate of its throughput."""
        calls = max(2, math.ceil(seconds * rps / (setting.parallel * setting.batch)))
        return self.measure(setting, calls)

    def _encoder(self, threads: int | None, per_row: bool) -> OnnxEncoder:
        key = (threads, per_row)
        if key not in self._encoders:
            self._encoders[key] = OnnxEncoder(self.directory, self.variant, threads=threads, per_row=per_row)
        return self._encoders[key]
