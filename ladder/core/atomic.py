"""Atomic file replacement: write beside the target, rename over it only once the writing succeeded."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def partial_file(path: Path, *, commit: bool = True) -> Iterator[Path]:
    """Yield a fresh path beside ``path`` to write to; when the block ends, rename it over ``path``.

    Readers see the old file or the new one, never half of one. The partial keeps ``path``'s suffix (savefig
    and ``np.save`` go by it) and is removed when the block raises, or when ``commit`` is false (write, check,
    and leave ``path`` alone). Parent folders are created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial{path.suffix}")
    try:
        yield partial
        if commit:
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
