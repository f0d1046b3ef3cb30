"""The default router shipped inside the package: its pool file and its checkpoint (package data)."""

from __future__ import annotations

from pathlib import Path

DEFAULTS = Path(__file__).resolve().parent


def default_pool_path() -> Path:
    """The pool file shipped with Ladder: eight MMLU-Pro models on a price ladder."""
    return DEFAULTS / "pool.yaml"


def default_checkpoint_path() -> Path:
    """The checkpoint shipped with Ladder, trained for the default pool (a pool's default checkpoint)."""
    return DEFAULTS / "checkpoint"
