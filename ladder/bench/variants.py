"""Batched throughput of the encoder's ways to run, and how far each moves a prompt's P(correct) in a batch.

The ways: the int8 graph with each row run alone, the int8 graph batched, and fp32 batched (invariant up to
float rounding). A per-token int8 graph (built since) is invariant batched too; a per-tensor one built before
shares one activation scale across the batch and its padding, so there only rows run alone are invariant.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ladder.core.encoder import OnnxEncoder
from ladder.core.router import Router
from ladder.core.scoring import EmbeddedScorer

SENTENCES = (
    "The committee reviewed the quarterly figures and asked for a summary of the risks.",
    "Prove that the sum of two odd integers is even.",
    "東京から大阪まで新幹線で何時間かかりますか？",
    "请解释一下量子纠缠的基本原理，并举一个例子。",
    "def merge(a, b):\n    return sorted(a + b)  # make this linear time",
    "Which enzyme unwinds the DNA double helix during replication?",
)
WAYS = {  # name: (variant, per_row)
    "int8_per_row": ("int8", True),
    "int8_batched": ("int8", False),
    "fp32_batched": ("fp32", False),
}


def mixed_prompts(count: int = 64, seed: int = 0) -> list[str]:
    """Prompts of mixed length (one to twelve sentences) and language, the same for every run."""
    rng = np.random.default_rng(seed)
    return [
        " ".join(SENTENCES[int(k)] for k in rng.integers(0, len(SENTENCES), int(rng.integers(1, 13))))
        for _ in range(count)
    ]


def _throughput(
    encoders: dict[str, OnnxEncoder], texts: list[str], batch_size: int, repeats: int
) -> dict[str, float]:
    """Prompts per second of each encoder on ``texts`` in length-sorted batches (least padding when batched),
    the ways taking turns so that machine noise hits them alike."""
    timings: dict[str, list[float]] = {name: [] for name in encoders}
    for encoder in encoders.values():
        encoder.embed(texts[:batch_size], batch_size)
    for _ in range(repeats):
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.embed(texts, batch_size)
            timings[name].append(time.perf_counter() - started)
    return {name: len(texts) / float(np.median(t)) for name, t in timings.items()}


def _batch_drift(router: Router, encoder: OnnxEncoder, texts: list[str], probes: int) -> float:
    """Max |P(correct) in a shuffled batch of all ``texts`` - P(correct) alone| over the first ``probes``."""
    head = router.scorer.head if isinstance(router.scorer, EmbeddedScorer) else None
    if head is None:
        raise TypeError("bench route measures the embedded scorer")
    encoded = router.tokenizer.encode(texts)
    together = head.predict(encoder.embed_ids(encoded.input_ids, encoded.attention_mask))
    worst = 0.0
    for i in range(probes):
        row = encoded.take([i])
        alone = head.predict(encoder.embed_ids(row.input_ids, row.attention_mask))[0]
        worst = max(worst, float(np.abs(alone - together[i]).max()))
    return worst


def bench_variants(
    router: Router, threads: int | None = None, batch_size: int = 16, repeats: int = 3, probes: int = 8
) -> dict[str, Any]:
    """Throughput (prompts/s) and batch drift of each way, on one mixed-length multilingual prompt set."""
    scorer = router.scorer
    if not isinstance(scorer, EmbeddedScorer):
        raise TypeError("bench route measures the embedded scorer")
    texts = mixed_prompts()
    lengths = router.tokenizer.encode(texts).lengths
    encoders = {
        name: OnnxEncoder(scorer.encoder.directory, variant, threads=threads, per_row=per_row)  # type: ignore[arg-type]
        for name, (variant, per_row) in WAYS.items()
    }
    rps = _throughput(encoders, texts, batch_size, repeats)
    ways = {
        name: {
            "throughput_rps": round(rps[name], 1),
            "max_batch_drift_p": float(f"{_batch_drift(router, encoder, texts, probes):.2e}"),
        }
        for name, encoder in encoders.items()
    }
    base = ways["int8_batched"]["throughput_rps"]
    for way in ways.values():
        way["relative_to_int8_batched"] = round(way["throughput_rps"] / base, 3)
    return {
        "prompts": len(texts),
        "mean_tokens": round(float(np.mean(lengths)), 1),
        "batch_size": batch_size,
        "ort_threads": threads if threads is not None else "default",
        "ways": ways,
    }
