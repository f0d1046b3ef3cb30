"""Where Ladder keeps what it builds at setup: ``$LADDER_HOME`` or ``~/.cache/ladder``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ladder.core.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def ladder_home() -> Path:
    """The root of built artefacts: ``$LADDER_HOME`` when set and non-empty, else ``~/.cache/ladder``."""
    env = os.environ.get("LADDER_HOME", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ladder"


def encoder_dir(name: str) -> Path:
    """The folder an encoder called ``name`` is built into: ``ladder_home()/encoders/<name>``."""
    if not _NAME.match(name):
        raise ConfigError(f"invalid encoder name {name!r}: use letters, digits, '.', '_' and '-'")
    return ladder_home() / "encoders" / name
