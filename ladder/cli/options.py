"""Command-line options that several `ladder` commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PoolOption = Annotated[Path | None, typer.Option("--pool", help="Pool file (default: the shipped pool).")]
PricesPoolOption = Annotated[Path | None, typer.Option(help="Pool file for models and prices.")]
CheckpointOption = Annotated[Path, typer.Option(help="Checkpoint folder.")]
StoreOption = Annotated[
    str, typer.Option("--store", help="SQLite file, or a database URL (postgresql+psycopg://...).")
]
CanonicalOutOption = Annotated[Path, typer.Option(help="Canonical CSV to write.")]
SplitOption = Annotated[
    float | None, typer.Option(help="Add a split column: this share of question ids becomes 'test'.")
]
MembersOption = Annotated[int, typer.Option(min=2, help="Ensemble members (= cross-validation folds).")]
JsonReportOption = Annotated[Path | None, typer.Option("--json", help="Write the report here.")]
