"""`ladder latency`: each model's expected latency from the answers `ladder collect` stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ladder.cli.options import StoreOption
from ladder.cli.progress import stderr


def latency(
    store: StoreOption,
    pool: Annotated[
        Path | None, typer.Option(help="Pool file whose models' `latency:` entries to set (with --write).")
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write the measured `latency:` entries into --pool.")
    ] = False,
) -> None:
    """Median time to first token and decode speed per model; the gateway starts from them (live
    measurements move them on)."""
    from ladder.core.errors import ConfigError
    from ladder.core.pool import load_pool
    from ladder.training.collect import AnswerStore
    from ladder.training.latency_profiles import check_models, measured_latency, write_pool_latency

    if write and pool is None:
        raise ConfigError("--write needs --pool (the pool file to update)")
    measured = measured_latency(AnswerStore(store, create=False))
    if not measured:
        raise ConfigError(f"{store}: no successful answers to learn latency from")
    table = Table(title="latency per model")
    table.add_column("model", no_wrap=True, min_width=max(len(m.model) for m in measured))
    for column in ("answers", "streamed", "TTFT ms", "tokens/s"):
        table.add_column(column, justify="right", no_wrap=True)
    for m in measured:
        row = m.to_dict()
        speed = "unknown" if row["tokens_per_s"] is None else f"{row['tokens_per_s']:.1f}"
        table.add_row(m.model, str(m.answers), str(m.streamed), f"{row['ttft_ms']:.0f}", speed)
    stderr.print(table)
    result: dict[str, object] = {"store": store, "models": [m.to_dict() for m in measured]}
    if pool is not None:
        config = load_pool(pool)
        missing = check_models(measured, {n: None for n in config.names})
        if missing:
            stderr.print(f"[yellow]not in {pool}:[/yellow] {', '.join(missing)}")
        if write:
            written = write_pool_latency(pool, measured)
            unknown = [m.model for m in measured if m.entry() is None and m.model in config.names]
            if written:
                stderr.print(f"wrote `latency:` for {', '.join(written)} into {pool}")
            if unknown:
                stderr.print(
                    f"[yellow]no `latency:` written for {', '.join(unknown)}[/yellow]: their decode speed is "
                    "unknown (no streamed answer with more than one token to time); collect streamed answers first",
                    highlight=False,
                )
            result["written"] = written
    typer.echo(json.dumps(result, indent=2))
