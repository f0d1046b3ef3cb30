"""`ladder serve` and `ladder bench gateway` (the gateway's commands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ladder.cli.options import PoolOption


def serve(
    pool: PoolOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Settings file (YAML or JSON); LADDER_* wins.")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Checkpoint folder to score with (default: the pool's routing.checkpoint)."),
    ] = None,
) -> None:
    """Start the OpenAI- and Anthropic-compatible gateway."""
    from ladder.cli.progress import stderr
    from ladder.core.pool import load_pool
    from ladder.gateway.server import serve as run
    from ladder.gateway.settings import load_settings
    from ladder.gateway.startup import banner, bind, check_keys

    settings = load_settings(config, pool=pool, host=host, port=port, checkpoint=checkpoint)
    loaded = load_pool(settings.pool, settings.checkpoint)
    warnings = check_keys(loaded, settings)
    sock = bind(settings)
    for line in banner(loaded, settings, int(sock.getsockname()[1])):
        stderr.print(line, highlight=False, markup=False, soft_wrap=True)
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    run(settings, sock)


def bench_gateway(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    pool: PoolOption = None,
    clients: Annotated[int, typer.Option(min=1, help="Concurrent clients.")] = 32,
    requests: Annotated[int, typer.Option(min=1, help="Requests in the concurrent run.")] = 5000,
    single_requests: Annotated[int, typer.Option(min=10, help="Requests in the single-client run.")] = 300,
    scorer_threads: Annotated[int | None, typer.Option(min=1, help="ORT threads for scoring.")] = None,
    open_fraction: Annotated[
        float, typer.Option(min=0.01, max=10.0, help="Open-loop rate over closed-loop throughput.")
    ] = 0.8,
    open_seconds: Annotated[float, typer.Option(min=0.1, help="Length of the open-loop run.")] = 10.0,
    rounds: Annotated[int, typer.Option(min=1, help="Parts of the closed loop, each between encoder runs.")] = 5,
    reference_seconds: Annotated[
        float, typer.Option(min=0.1, help="Length of each measurement of the bare encoder.")
    ] = 4.0,
) -> None:
    """Gateway overhead, closed-loop throughput and open-loop latency under load, as JSON (docs/bench.md)."""
    from ladder.bench.gateway import bench_gateway as run
    from ladder.core.pool import load_pool
    from ladder.core.router import default_pool_path

    report = run(
        load_pool(pool or default_pool_path()),
        clients,
        requests,
        single_requests,
        scorer_threads,
        open_fraction=open_fraction,
        open_seconds=open_seconds,
        rounds=rounds,
        reference_seconds=reference_seconds,
    )
    typer.echo(json.dumps(report, indent=None if as_json else 2))
