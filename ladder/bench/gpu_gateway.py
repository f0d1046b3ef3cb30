"""The gateway in front of the GPU Triton, loaded on ``POST /v1/route`` by ``ladder bench gateway``'s generator:
closed-loop capacity, then a fixed-rate open loop at a share of it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ladder.bench.gateway import HOST, processes, run_async
from ladder.bench.loadgen import closed_loop, open_loop
from ladder.core.encoder import Tokenizer
from ladder.core.pool import PoolConfig
from ladder.core.prompt import routed_text

PATH = "/v1/route"  # a decision without an upstream call: what Triton's throughput bounds
CLIENTS = 64
SENTENCE = "Explain how a learned router picks the cheapest model that will answer each question correctly"


def prompt_text(directory: Path, tokens: int) -> tuple[str, int]:
    """A user message whose routed text is ``tokens`` tokens long (or the nearest below), and its length."""
    tokenizer = Tokenizer(directory)

    def length(words: int) -> int:
        message = [{"role": "user", "content": _words(words)}]
        return int(tokenizer.encode([routed_text(message)]).lengths[0])

    low, high = 1, 4 * tokens
    while low < high:  # the most words whose text is at most ``tokens`` tokens long
        middle = (low + high + 1) // 2
        if length(middle) <= tokens:
            low = middle
        else:
            high = middle - 1
    return _words(low), length(low)


def _words(count: int) -> str:
    words = SENTENCE.split()
    return " ".join(words[i % len(words)] for i in range(count))


def gateway_env(triton_url: str, checkpoint: Path) -> dict[str, str]:
    """The gateway scores on Triton only: no in-process fallback that would flatter the figures."""
    return {
        "LADDER_SCORER": "triton",
        "LADDER_TRITON__URL": triton_url,
        "LADDER_TRITON__ON_UNAVAILABLE": "error",
        "LADDER_TRITON__CONNECTIONS": "8",
        "LADDER_CHECKPOINT": str(checkpoint),
        "LADDER_SCORE_QUEUE_MAX": "4096",
    }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block (``processes`` hands the caller's environment on)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def measure_gateway(
    pool: PoolConfig,
    triton_url: str,
    checkpoint: Path,
    prompts: Mapping[int, str],
    seconds: float,
    fraction: float,
    window: Callable[[float, float], dict[str, Any]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Per prompt length: closed-loop decisions/s with ``CLIENTS`` clients for about ``seconds``, then
    p50/p99 at ``fraction`` of it with fixed-interval arrivals; ``window(start, end)`` adds GPU figures."""
    results: dict[str, Any] = {}
    with environment(gateway_env(triton_url, checkpoint)), processes(pool, None) as running:
        url = f"http://{HOST}:{running.gateway_port}{PATH}"
        for tokens, text in prompts.items():
            body = json.dumps({"model": "ladder", "messages": [{"role": "user", "content": text}]}).encode()
            probe = run_async(closed_loop(url, body, CLIENTS, 4 * CLIENTS))  # warms up, sizes the run
            rate = probe.counts()["ok"] / probe.seconds if probe.seconds else 0.0
            started = time.monotonic()
            closed = run_async(closed_loop(url, body, CLIENTS, max(CLIENTS, round(rate * seconds))))
            closed_gpu = window(started, time.monotonic())
            capacity = closed.counts()["ok"] / closed.seconds if closed.seconds else 0.0
            offered = max(1.0, fraction * capacity)
            log(f"gateway, {tokens} tokens: {capacity:.0f} decisions/s closed-loop; {offered:.0f}/s open-loop")
            started = time.monotonic()
            opened = run_async(open_loop(url, body, offered, round(offered * seconds), 1.5 * seconds, 4096, "fixed"))
            open_gpu = window(started, time.monotonic())
            results[str(tokens)] = {
                "closed_loop": {
                    "clients": CLIENTS,
                    **_figures(closed.summary()),
                    "gpu": closed_gpu,
                },
                "open_loop": {
                    "arrivals": "fixed",
                    "rate_per_s": round(offered, 1),
                    "rate_fraction_of_closed_loop": fraction,
                    **_figures(opened.summary()),
                    "gpu": open_gpu,
                },
            }
    return results


def _figures(summary: Mapping[str, Any]) -> dict[str, Any]:
    latency = summary["latency_ms"]
    return {
        "decisions_per_s": summary["admitted_rps"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "sent": summary["sent"],
        "errors": summary["errors"],
        "refused_429": summary["refused_429"],
    }
