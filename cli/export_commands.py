"""`ladder export` and `ladder bench triton` (the Triton model repository's commands)."""

from __future__ import annotations


def export() -> None:
    """Export the router into a Triton model repository."""
    raise NotImplementedError


def bench_triton() -> None:
    """perf_analyzer against the router ensemble, beside the in-process scorer."""
    raise NotImplementedError
