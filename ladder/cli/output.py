"""One rule for the files a command writes: parent folders are created, an existing one needs --force."""

from __future__ import annotations

from pathlib import Path

from ladder.core.atomic import partial_file
from ladder.core.errors import ConfigError


def prepare_output(path: Path, option: str, force: bool) -> Path:
    """Check an output path before the work starts: its folder can be made, and it is new or ``force``d."""
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file path")
    if path.exists() and not force:
        raise ConfigError(f"{option} {path}: already exists; choose another path, or pass --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot create its folder {path.parent} ({exc.strerror})") from exc
    return path


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically, creating the parent folders."""
    with partial_file(path) as partial:
        partial.write_text(text, encoding="utf-8")
