"""`ladder bench router-cost`: the CPU-seconds the router spends per 1,000 decisions, measured in-process."""

from __future__ import annotations

import time
from typing import Any

from ladder.bench.route import LONG_SENTENCE, SHORT_PROMPT
from ladder.core.pool import PoolConfig
from ladder.core.router import Router
from ladder.core.router_cost import RouterCost

GATEWAY_THREADS = 1  # ONNX Runtime threads per scoring call, as the gateway runs it (scorer_threads)
LONG_PROMPT = LONG_SENTENCE * 40 + "Which risk should the committee address first, and why?"


def cpu_s_per_1k(router: Router, prompts: list[str], decisions: int) -> float:
    """CPU time of this process (every thread: tokeniser, ONNX Runtime, policy) per 1,000 decisions, one
    decision at a time as a lightly loaded gateway makes them (batching under load makes them cheaper)."""
    for prompt in prompts:  # warm-up: sessions, caches, first allocations
        router.route(prompt)
    started = time.process_time()
    for i in range(decisions):
        router.route(prompts[i % len(prompts)])
    return (time.process_time() - started) * 1000.0 / decisions


def bench_router_cost(
    pool: PoolConfig, decisions: int, instance_usd_per_hour: float, instance_vcpus: float
) -> dict[str, Any]:
    """The figure per prompt length and for short and long prompts alternating, with its cost."""
    router = Router.from_pool(pool, threads=GATEWAY_THREADS)
    short, long = cpu_s_per_1k(router, [SHORT_PROMPT], decisions), cpu_s_per_1k(router, [LONG_PROMPT], decisions)
    mixed = cpu_s_per_1k(router, [SHORT_PROMPT, LONG_PROMPT], decisions)
    tokens = [int(n) for n in router.tokenizer.encode([SHORT_PROMPT, LONG_PROMPT]).lengths]
    cost = RouterCost(mixed, instance_usd_per_hour, instance_vcpus, f"measured: {decisions} decisions")
    return {
        "encoder": router.pool.routing.encoder,
        "decisions": decisions,
        "cpu_s_per_1k": {
            f"{tokens[0]}_tokens": round(short, 3),
            f"{tokens[1]}_tokens": round(long, 3),
            "alternating": round(mixed, 3),
        },
        "instance_usd_per_hour": instance_usd_per_hour,
        "instance_vcpus": instance_vcpus,
        "usd_per_1k": cost.usd_per_1k,
        "usd_per_million": cost.usd_per_1k * 1000,
    }
