"""`ladder bench route`: in-process decision latency against the bare encoder, and batched throughput."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ladder.bench.variants import bench_variants
from ladder.core.encoder import OnnxEncoder
from ladder.core.pool import PoolConfig
from ladder.core.router import Router
from ladder.core.scoring import EmbeddedScorer

SHORT_PROMPT = (
    "A train leaves at 3 pm at 80 km/h. A second one leaves the same station at 4 pm at 100 km/h. "
    "When does it catch up?"
)
LONG_SENTENCE = (
    "The committee reviewed the quarterly figures, the supply contracts and the staffing plan in detail, "
    "and asked for a written summary of the risks before the next meeting. "
)


def _interleaved(calls: tuple[Callable[[], object], ...], repeats: int) -> list[np.ndarray]:
    """Milliseconds per call for each callable, alternating them so machine noise hits all alike."""
    for call in calls:
        for _ in range(5):
            call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, out in zip(calls, samples, strict=True):
            started = time.perf_counter()
            call()
            out.append((time.perf_counter() - started) * 1000)
    return [np.asarray(s) for s in samples]


def bench_route(pool: PoolConfig, repeats: int = 200, variants: bool = True) -> dict[str, Any]:
    """p50/p99 of a full decision (tokenise, score, price, decide) and p50 of the bare encoder; then the
    batched throughput and batch drift of each way to run the encoder (one ORT thread, as each gateway
    scoring worker runs it, and ORT's default threads)."""
    router = Router.from_pool(pool)
    scorer = router.scorer
    if not isinstance(scorer, EmbeddedScorer):
        raise TypeError("bench route measures the embedded scorer")
    # the reference: the same encoder graph alone (the router's own runs the head fused onto it)
    bare = OnnxEncoder(scorer.encoder.directory, scorer.encoder.variant, per_row=scorer.encoder.per_row)
    result: dict[str, Any] = {
        "encoder": {"variant": bare.variant, "per_row": bare.per_row, "head_fused": scorer.encoder.has_head},
    }
    long_prompt = LONG_SENTENCE * 40 + "Which risk should the committee address first, and why?"
    for label, prompt in (("short", SHORT_PROMPT), ("long", long_prompt)):
        encoded = router.tokenizer.encode([prompt])
        decision, encoder = _interleaved(
            (
                lambda p=prompt: router.route(p),  # type: ignore[misc]
                lambda e=encoded: bare.embed_ids(e.input_ids, e.attention_mask),  # type: ignore[misc]
            ),
            repeats,
        )
        result[label] = {
            "tokens": int(encoded.lengths[0]),
            "decision_p50_ms": round(float(np.percentile(decision, 50)), 3),
            "decision_p99_ms": round(float(np.percentile(decision, 99)), 3),
            "encoder_p50_ms": round(float(np.percentile(encoder, 50)), 3),
            "decision_over_encoder": round(float(np.percentile(decision, 50) / np.percentile(encoder, 50)), 3),
        }
    if variants:
        result["batched"] = {
            "one_thread": bench_variants(router, threads=1),
            "default_threads": bench_variants(router, threads=None),
        }
    return result
