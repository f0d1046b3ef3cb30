"""`ladder serve` and `ladder bench gateway` (the gateway's commands)."""

from __future__ import annotations


def serve() -> None:
    """Start the OpenAI-compatible gateway."""
    raise NotImplementedError


def bench_gateway() -> None:
    """Gateway overhead and concurrent throughput, as JSON."""
    raise NotImplementedError
