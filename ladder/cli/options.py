"""Command-line options that several `ladder` commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PoolOption = Annotated[Path | None, typer.Option("--pool", help="Pool file (default: the shipped pool).")]
