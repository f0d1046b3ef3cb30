"""Secrets by name: the environment variable, else a file of that name in ``LADDER_SECRETS_DIR``.

A Kubernetes Secret mounted as files (one file per key, named like the variable) keeps credentials out of
the pod's environment, which every process in the container and every child it starts can read. The
directory is read when a name is first asked for; a rotated Secret is picked up at the next restart.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

SECRETS_DIR_ENV = "LADDER_SECRETS_DIR"


def secrets_dir() -> Path | None:
    """The mounted secrets folder, when ``LADDER_SECRETS_DIR`` names one."""
    value = os.environ.get(SECRETS_DIR_ENV)
    return Path(value) if value else None


def secret(name: str) -> str | None:
    """``$name`` when set and not empty, else the file ``$LADDER_SECRETS_DIR/name`` (trailing newline cut)."""
    value = os.environ.get(name)
    if value:
        return value
    directory = secrets_dir()
    return None if directory is None else _read(directory, name)


@cache
def _read(directory: Path, name: str) -> str | None:
    try:
        text = (directory / name).read_text(encoding="utf-8").rstrip("\r\n")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return text or None
