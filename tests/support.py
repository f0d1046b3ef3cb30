"""Shared test helpers: where the public routing data lives, and running the real `ladder` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """`../shared/data` beside the checkout, or $LADDER_SHARED_DATA; skips the test when absent."""
    path = Path(os.environ.get("LADDER_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"public routing data not found at {path} (set LADDER_SHARED_DATA)")
    return path


def ladder(
    *args: str, input_bytes: bytes | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `ladder ARGS...` as a user would, capturing text output."""
    result = subprocess.run(
        [sys.executable, "-m", "ladder.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=None if input_bytes is None else input_bytes.decode("utf-8", "surrogateescape"),
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ladder {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result
