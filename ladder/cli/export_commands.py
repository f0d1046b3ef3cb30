"""`ladder export`, `ladder bench triton` and `ladder bench gpu` (the Triton model repository's commands)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ladder.cli.options import CheckpointOption
from ladder.cli.progress import stderr
from ladder.defaults import default_checkpoint_path

DEFAULT_CHECKPOINT = default_checkpoint_path()  # shipped in the package (ladder/defaults)
DEFAULT_REPOSITORY = Path("model_repository")


class FlavourChoice(StrEnum):
    """Which Triton backends the repository targets."""

    cpu = "cpu"
    gpu = "gpu"


def export(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
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
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown summary.")] = Path("docs/perf"),
    int8: Annotated[bool, typer.Option("--int8/--fp32", help="Encoder variant on both sides.")] = True,
    seconds: Annotated[float, typer.Option(min=2, help="Measurement window per point.")] = 8.0,
) -> None:
    """perf_analyzer against the router ensemble (cpu flavour, real tritonserver) beside in-process."""
    from ladder.export.triton_perf import run_benchmark

    report = run_benchmark(checkpoint, out, int8=int8, seconds=seconds, log=stderr.print)
    typer.echo(json.dumps(report, indent=2))


class GpuStage(StrEnum):
    """The stages of ``ladder bench gpu``, in order."""

    preflight = "preflight"
    configs = "configs"
    commands = "commands"
    repository = "repository"
    triton = "triton"
    perf_128 = "perf_128"
    perf_512 = "perf_512"
    gateway = "gateway"


def bench_gpu(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    out: Annotated[Path, typer.Option(help="The JSON to write.")] = Path("docs/perf/triton_gpu.json"),
    pool: Annotated[Path | None, typer.Option(help="Pool file of the gateway (default: the shipped pool).")] = None,
    budget: Annotated[float, typer.Option(min=60, help="Time budget of the whole run, in seconds.")] = 540.0,
    until: Annotated[
        GpuStage | None, typer.Option(help="Stop after this stage (later ones are reported skipped).")
    ] = None,
    gpu: Annotated[int, typer.Option(min=0, help="GPU index nvidia-smi samples.")] = 0,
    gateway_seconds: Annotated[float, typer.Option(min=1, help="Length of each gateway run.")] = 8.0,
    work: Annotated[
        Path | None, typer.Option(help="Folder for the repository, inputs and logs (kept; default: temporary).")
    ] = None,
) -> None:
    """The GPU run: build the encoder, serve it from Triton, perf_analyzer at 128 and 512 tokens, the gateway
    in front; one JSON. Exit 0 with figures, 1 when a stage failed, 3 when the GPU stages were skipped."""
    from ladder.bench.gpu_run import GpuBenchOptions, run_gpu_bench

    options = GpuBenchOptions(
        checkpoint=checkpoint,
        out=out,
        pool=pool,
        budget_s=budget,
        until=until.value if until else None,
        gpu=gpu,
        gateway_seconds=gateway_seconds,
        work=work,
        command=f"ladder bench gpu --checkpoint {checkpoint} --out {out}",
    )
    def log(line: str) -> None:
        stderr.print(line, highlight=False, markup=False, soft_wrap=True)

    report, status = run_gpu_bench(options, log=log)
    typer.echo(json.dumps({"summary": report["summary"], "goal": report["goal"], "figures": report["figures"]}))
    raise typer.Exit(status)
