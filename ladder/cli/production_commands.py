"""`ladder export-traffic`, `ladder report` and `ladder retrain`: learning from production traffic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ladder.cli.options import JsonReportOption, MembersOption, PoolOption
from ladder.cli.progress import stage_progress, stderr
from ladder.core.router_cost import (
    DEFAULT_CPU_S_PER_1K,
    DEFAULT_INSTANCE_USD_PER_HOUR,
    DEFAULT_INSTANCE_VCPUS,
    RouterCost,
)
from ladder.core.secrets import secret

AuditOption = Annotated[
    list[Path] | None, typer.Option("--audit", help="Audit log(s) written by the gateway (JSON lines).")
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--feedback",
        "--db",
        help="The gateway's traffic_db (a SQLite path or SQLAlchemy URL); default: LADDER_TRAFFIC_DB, "
        "or that file in LADDER_SECRETS_DIR.",
    ),
]
InstancePriceOption = Annotated[
    float,
    typer.Option(min=0, help="Price of the instance the router runs on, USD per hour (an on-demand 2-vCPU: ~0.10)."),
]
InstanceVcpusOption = Annotated[float, typer.Option(min=0.1, help="vCPUs of that instance.")]
SinceOption = Annotated[
    str | None,
    typer.Option(help="Only decisions since then: a duration back from now (24h, 7d) or an ISO time."),
]


def _open_db(target: str | None) -> Any:
    from ladder.core.traffic_db import TrafficDB

    return TrafficDB(target, create=False) if target else None


def _pool(path: Path | None) -> Any:
    from ladder.core.pool import load_pool
    from ladder.core.router import default_pool_path

    return load_pool(path or default_pool_path())


def _sources(text: str) -> frozenset[str]:
    from ladder.core.errors import DataError

    chosen = frozenset(s.strip() for s in text.split(",") if s.strip())
    if not chosen or not chosen <= {"feedback", "shadow"}:
        raise DataError(f"--sources: give feedback, shadow or feedback,shadow, not {text!r}")
    return chosen


def export_traffic(
    out: Annotated[Path, typer.Option(help="Canonical CSV to write (.csv or .csv.gz).")],
    audit: AuditOption = None,
    feedback: DbOption = None,
    pool: PoolOption = None,
    since: SinceOption = None,
    test_fraction: Annotated[
        float | None, typer.Option(help="Add a split column: this share of questions (by text) is 'test'.")
    ] = None,
    sources: Annotated[
        str, typer.Option(help="Outcomes to use: feedback, shadow (verdicts of shadow judging), or both.")
    ] = "feedback,shadow",
) -> None:
    """Turn logged decisions and reported outcomes into canonical training rows."""
    from ladder.core.errors import DataError
    from ladder.training.dataset import write_canonical
    from ladder.training.traffic import export_traffic as run
    from ladder.training.traffic import load_decisions, window_start

    feedback = feedback or secret("LADDER_TRAFFIC_DB")
    db = _open_db(feedback)
    if db is None:
        raise DataError("--feedback: the traffic database holding the outcomes is required")
    try:
        decisions = load_decisions(audit or [], db, window_start(since))
        data, summary = run(
            decisions, list(db.iter_outcomes()), _pool(pool), test_fraction, _sources(sources)
        )
    finally:
        db.close()
    write_canonical(data, out)
    stderr.print(json.dumps(summary.to_dict(), indent=2), highlight=False)
    stderr.print(f"[green]wrote {out}[/green]: {summary.rows} rows, {summary.questions} questions")


def report(
    audit: AuditOption = None,
    feedback: DbOption = None,
    baseline: Annotated[
        list[Path] | None,
        typer.Option(help="Reference audit log(s) (default: the checkpoint's calibration sample)."),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Reference checkpoint (default: the pool's).")
    ] = None,
    pool: PoolOption = None,
    since: SinceOption = None,
    bucket: Annotated[str, typer.Option(help="Time bucket: hour or day.")] = "day",
    plot: Annotated[Path | None, typer.Option(help="Write the PNG here.")] = None,
    json_path: JsonReportOption = None,
    drift_threshold: Annotated[
        float, typer.Option(min=0, max=1, help="Drift when chosen-model shares move more (total variation).")
    ] = 0.15,
    psi_threshold: Annotated[
        float, typer.Option(min=0, help="Drift when any model's P(correct) PSI exceeds this.")
    ] = 0.25,
    min_requests: Annotated[int, typer.Option(min=1, help="Fewer requests: drift is not assessed.")] = 50,
    router_cpu_s_per_1k: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="CPU-seconds the router spends per 1,000 decisions (`ladder bench router-cost`); "
            "default: the shipped router's figure, or a measurement with --measure-router.",
        ),
    ] = None,
    measure_router: Annotated[
        bool, typer.Option(help="Measure the pool's router on this machine (a few seconds) for that figure.")
    ] = False,
    instance_usd_per_hour: InstancePriceOption = DEFAULT_INSTANCE_USD_PER_HOUR,
    instance_vcpus: InstanceVcpusOption = DEFAULT_INSTANCE_VCPUS,
) -> None:
    """Routing shares, cost and savings over time, the router's own cost beside them, and drift; exit status 1
    when drift passes a threshold."""
    from ladder.core.checkpoint import Checkpoint
    from ladder.core.errors import DataError
    from ladder.training.drift_report import (
        build_report,
        checkpoint_sample,
        typical_routing,
        window_sample,
        write_report,
    )
    from ladder.training.traffic import load_decisions, window_start

    if bucket not in ("hour", "day"):
        raise DataError(f"--bucket must be hour or day, got {bucket!r}")
    feedback = feedback or secret("LADDER_TRAFFIC_DB")
    if not audit and not feedback:
        raise DataError("give the decisions to report on: --audit FILE and/or --feedback DB")
    db = _open_db(feedback)
    try:
        decisions = sorted(
            load_decisions(audit or [], db, window_start(since)).values(), key=lambda r: r.time
        )
    finally:
        if db is not None:
            db.close()
    window = window_sample(decisions, "the window")
    if baseline:
        reference_rows = list(load_decisions(baseline, None).values())
        reference = window_sample(reference_rows, "the baseline")
        if reference.names != window.names:
            raise DataError(f"the baseline scored {reference.names}, the window {window.names}")
    else:
        loaded_pool = _pool(pool)
        loaded = Checkpoint.load(checkpoint or loaded_pool.routing.checkpoint)
        tolerance, costs = typical_routing(decisions, window.names)
        reference = checkpoint_sample(loaded, loaded_pool, window, tolerance, costs)
    result = build_report(
        decisions, reference, window, bucket, {"share": drift_threshold, "psi": psi_threshold}, min_requests
    )
    result["router"] = _router_cost(
        router_cpu_s_per_1k, measure_router, pool, instance_usd_per_hour, instance_vcpus
    ).summary(result["requests"], result["savings_usd"])
    if json_path:
        write_report(result, json_path)
    if plot:
        from ladder.training.drift_plot import plot_drift

        plot_drift(result, plot)
    drift = result["drift"]
    saved = result["savings_share"]
    typer.echo(
        f"{result['requests']} requests; cost ${result['cost_usd']:.4f} vs "
        f"${result['baseline_cost_usd']:.4f} "
        f"for the baseline model{f' ({saved:.0%} saved)' if saved is not None else ''}"
    )
    typer.echo(
        f"shares moved {drift['share_tvd']:.3f} (TV), max PSI {drift['max_psi']:.3f}, "
        f"max KS {drift['max_ks']:.3f}"
    )
    own = result["router"]
    typer.echo(
        f"the router itself: {own['cpu_s_per_1k']:.1f} CPU-s per 1,000 decisions ({own['source']}), "
        f"${own['cost_usd']:.4f} for these requests at ${own['instance_usd_per_hour']:.3f}/h per "
        f"{own['instance_vcpus']:g} vCPUs; saved ${own['net_savings_usd']:.4f} net of it"
    )
    for reason in drift["reasons"]:
        typer.echo(("DRIFT: " if drift["drifted"] else "") + reason)
    if not json_path:
        typer.echo(json.dumps(result, indent=2))
    if drift["drifted"]:
        raise typer.Exit(1)


def _router_cost(
    cpu_s_per_1k: float | None, measure: bool, pool: Path | None, usd_per_hour: float, vcpus: float
) -> RouterCost:
    """The router's own cost: the given figure, a short measurement here, or the shipped router's figure."""
    if cpu_s_per_1k is not None and measure:
        from ladder.core.errors import DataError

        raise DataError("give --router-cpu-s-per-1k or --measure-router, not both")
    if measure:
        from ladder.bench.route import SHORT_PROMPT
        from ladder.bench.router_cost import GATEWAY_THREADS, LONG_PROMPT
        from ladder.bench.router_cost import cpu_s_per_1k as measured
        from ladder.core.router import Router

        router = Router.from_pool(_pool(pool), threads=GATEWAY_THREADS)
        figure = measured(router, [SHORT_PROMPT, LONG_PROMPT], 100)
        return RouterCost(figure, usd_per_hour, vcpus, "measured here: 100 decisions")
    if cpu_s_per_1k is not None:
        return RouterCost(cpu_s_per_1k, usd_per_hour, vcpus, "--router-cpu-s-per-1k")
    return RouterCost(DEFAULT_CPU_S_PER_1K, usd_per_hour, vcpus)


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _namespace(given: str | None) -> str:
    if given:
        return given
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    return "default"


def retrain(
    feedback: DbOption = None,
    audit: AuditOption = None,
    pool: PoolOption = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="The serving checkpoint (default: the pool's); promotion replaces it.")
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Base training rows (default: the serving checkpoint's training files)."),
    ] = None,
    since: SinceOption = "24h",
    test_fraction: Annotated[
        float, typer.Option(help="Share of traffic questions held out to judge on.")
    ] = 0.2,
    objective: Annotated[str, typer.Option(help="brier, log-loss, auc or accuracy.")] = "brier",
    margin: Annotated[
        float, typer.Option(help="Promote only when the candidate is better by this much.")
    ] = 0.0,
    min_labels: Annotated[int, typer.Option(min=1, help="Held-out labels needed to decide at all.")] = 30,
    work: Annotated[Path | None, typer.Option(help="Folder for the exported traffic CSVs.")] = None,
    seed: int = 0,
    members: MembersOption = 5,
    pca_dims: Annotated[int, typer.Option(min=2)] = 64,
    deployment: Annotated[
        str | None, typer.Option(help="Gateway Deployment to roll after a promotion (none: do not roll).")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Its namespace (default: the pod's own).")] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Kubeconfig file (default: the pod's service account).")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the decision report here.")] = None,
) -> None:
    """Train on the day's traffic labels; promote and roll the gateway only if the candidate wins."""
    from ladder.core.checkpoint import Checkpoint
    from ladder.core.errors import DataError
    from ladder.training.retrain import OBJECTIVES

    feedback = feedback or secret("LADDER_TRAFFIC_DB")
    if not feedback:
        raise DataError("--feedback: the traffic database holding the outcomes is required")
    if objective not in OBJECTIVES:
        raise DataError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    db = _open_db(feedback)  # fails now, before PyTorch loads, when the database is missing
    loaded_pool = _pool(pool)

    from ladder.training.dataset import read_canonical, write_canonical
    from ladder.training.drift_report import write_report
    from ladder.training.fit import HeadSettings
    from ladder.training.promote import DeploymentRef, RolloutError, install, rollout_restart
    from ladder.training.retrain import RetrainSpec, discard
    from ladder.training.retrain import retrain as run
    from ladder.training.traffic import export_traffic as export
    from ladder.training.traffic import load_decisions, window_start
    from ladder.training.train import TrainingSpec, training_rows

    target = (checkpoint or loaded_pool.routing.checkpoint).absolute()
    serving = Checkpoint.load(target)
    enc = serving.manifest.encoder
    head = HeadSettings(seed=seed, members=members, pca_dims=pca_dims)
    spec = RetrainSpec(
        TrainingSpec(encoder=enc.name, variant=enc.variant, split=None, head=head),
        objective,
        margin,
        min_labels,
    )
    try:
        decisions = load_decisions(audit or [], db, window_start(since))
        traffic, summary = export(decisions, list(db.iter_outcomes()), loaded_pool, test_fraction)
    finally:
        db.close()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    traffic_csv = write_canonical(traffic, (work or target.parent / "traffic") / f"traffic-{stamp}.csv.gz")
    base_files = data or [Path(p) for p in serving.manifest.training.data_files]
    base = None
    if base_files and all(p.is_file() for p in base_files):
        base = training_rows(read_canonical(base_files), "train" if not data else None)
    elif base_files:
        stderr.print(
            "[yellow]the serving checkpoint's training files are gone: training on traffic only[/yellow]"
        )
    candidate_dir = target.parent / f".{target.name}.candidate-{stamp}"
    files = [*(str(p) for p in base_files if base is not None), str(traffic_csv)]
    try:
        with stage_progress() as progress:
            result = run(traffic, base, serving, loaded_pool, candidate_dir, spec, files, progress)
        result["traffic"] = {"csv": str(traffic_csv), **summary.to_dict()}
        if result["promote"]:
            previous = install(candidate_dir, target)
            result["installed"] = {"checkpoint": str(target), "previous": str(previous) if previous else None}
    finally:
        discard(candidate_dir)
    failure: RolloutError | None = None
    if result["promote"] and deployment:
        try:
            result["rollout"] = rollout_restart(DeploymentRef(deployment, _namespace(namespace), kubeconfig))
        except RolloutError as exc:
            result["rollout"] = {"error": str(exc)}
            failure = exc
    if json_path:
        write_report(result, json_path)
    typer.echo(result["reason"])
    if json_path is None:
        typer.echo(json.dumps(result, indent=2))
    if failure is not None:
        raise failure
