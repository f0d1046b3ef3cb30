"""`ladder export` and `ladder bench triton` (the Triton model repository's commands)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ladder.cli.progress import stderr
from ladder.defaults import default_checkpoint_path

DEFAULT_CHECKPOINT = default_checkpoint_path()  # shipped in the package (ladder/defaults)
DEFAULT_REPOSITORY = Path("model_repository")


class FlavourChoice(StrEnum):
    """Which Triton backends the repository targets."""

    cpu = "cpu"
    gpu = "gpu"


def export(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint folder.")] = DEFAULT_CHECKPOINT,
    encoder: Annotated[str | None, typer.Option(help="Encoder name (default: the checkpoint's).")] = None,
    flavour: Annotated[
        FlavourChoice,
        typer.Option(help="gpu: onnxruntime backend + TensorRT; cpu: python-backend ONNX Runtime."),
    ] = FlavourChoice.gpu,
    int8: Annotated[
        bool, typer.Option("--int8/--fp32", help="cpu flavour: the int8 (per-channel) encoder.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Triton model repository to write.")] = DEFAULT_REPOSITORY,
    max_batch: Annotated[int, typer.Option(min=1, max=1024, help="max_batch_size of every model.")] = 64,
    queue_delay_us: Annotated[
        int | None, typer.Option(min=0, help="Dynamic batching max queue delay (default: tuned per flavour).")
    ] = None,
    tensorrt_plan: Annotated[
        bool, typer.Option(help="gpu: build a tensorrt_plan engine with trtexec (on the target GPU only).")
    ] = False,
) -> None:
    """Export the router into a Triton model repository (parity-checked against the embedded scorer)."""
    from ladder.export.triton_repo import export_repository

    result = export_repository(
        checkpoint,
        out,
        encoder=encoder,
        flavour=flavour.value,
        int8=int8,
        max_batch=max_batch,
        queue_delay_us=queue_delay_us,
        tensorrt_plan=tensorrt_plan,
        log=lambda line: stderr.print(line, highlight=False),
    )
    stderr.print(
        f"[green]exported[/green] {result.flavour} repository to {result.out} "
        f"(parity {result.parity_max_diff:.1e} ≤ {result.tolerance:g})"
    )


def bench_triton(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint folder.")] = DEFAULT_CHECKPOINT,
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown summary.")] = Path("docs/perf"),
    int8: Annotated[bool, typer.Option("--int8/--fp32", help="Encoder variant on both sides.")] = True,
    seconds: Annotated[float, typer.Option(min=2, help="Measurement window per point.")] = 8.0,
) -> None:
    """perf_analyzer against the router ensemble (cpu flavour, real tritonserver) beside in-process."""
    from ladder.export.triton_perf import run_benchmark

    report = run_benchmark(checkpoint, out, int8=int8, seconds=seconds, log=stderr.print)
    typer.echo(json.dumps(report, indent=2))
