"""`ladder onboard` and `ladder calibrate`: fit a trained router to a new model and to a target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ladder.cli.options import CheckpointOption, PricesPoolOption
from ladder.cli.progress import stage_progress, stderr


def _emit(payload: dict[str, Any], json_path: Path | None) -> None:
    text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n", encoding="utf-8")
    typer.echo(text)


def onboard(
    checkpoint: Annotated[Path, typer.Option(help="The trained checkpoint to extend.")],
    data: Annotated[
        Path, typer.Option(help="Canonical CSV: the new model's labels (with --suggest: the training data).")
    ],
    out: Annotated[Path | None, typer.Option(help="Checkpoint folder to write (with the new model).")] = None,
    model: Annotated[
        str | None, typer.Option(help="The new model (default: the one the checkpoint lacks).")
    ] = None,
    suggest: Annotated[
        int | None, typer.Option(min=1, help="Instead: pick this many probe questions from --data.")
    ] = None,
    questions: Annotated[
        Path | None, typer.Option(help="With --suggest: the questions file to write (JSONL id, question).")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="With --suggest: draw from rows with this split.")
    ] = "train",
    seed: int = 0,
    pca_dims: Annotated[
        int, typer.Option(min=0, help="Principal components of the embedding added to the features.")
    ] = 0,
    train_data: Annotated[
        list[Path] | None,
        typer.Option(help="The base's training data (default: the files its manifest names, when present)."),
    ] = None,
    eval_data: Annotated[
        Path | None, typer.Option(help="Held-out canonical rows (every model): report the curve with it.")
    ] = None,
    pool: Annotated[
        Path | None, typer.Option(help="With --eval-data: the pool file, with the new model.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the summary here.")] = None,
) -> None:
    """Add a model to a trained router from a small labelled sample; or suggest the probes to label."""
    from ladder.core.checkpoint import Checkpoint
    from ladder.core.errors import DataError
    from ladder.training.dataset import read_canonical

    base = Checkpoint.load(checkpoint)
    dataset = read_canonical([data])
    if suggest is not None:
        if questions is None:
            raise DataError("--suggest needs --questions FILE to write the probes to")
        _suggest(base, dataset, suggest, questions, split, seed)
        return
    if out is None:
        raise DataError("--out is required (the onboarded checkpoint's folder)")
    from ladder.training.onboard import onboard as run_onboard
    from ladder.training.onboard_fit import OnboardSettings

    train_files = train_data or [Path(f) for f in base.manifest.training.data_files]
    base_rows = None
    if train_files and all(f.is_file() for f in train_files):
        base_rows = read_canonical(train_files)
    else:
        stderr.print(
            "[yellow]warning:[/yellow] the base's training data was not found: if the sample's questions "
            "were in it, the head's scores on them are in-sample (pass --train-data)"
        )
    settings = OnboardSettings(pca_dims=pca_dims, seed=seed)
    with stage_progress() as progress:
        result = run_onboard(base, dataset, [str(data)], out, model, settings, progress, base_rows)
    area = result.metrics["auc"]
    stderr.print(
        f"[green]checkpoint written[/green] to {out}: {result.model} joined {len(base.models)} models "
        f"from {result.labels} labels (cross-validated AUC "
        f"{'n/a: one class only' if area is None else f'{area:.3f}'})"
    )
    held_out = _held_out(out, eval_data, pool, result.model) if eval_data is not None else None
    _emit(
        {
            "held_out": held_out,
            "checkpoint": str(out),
            "model": result.model,
            "labels": result.labels,
            "cross_validated": result.metrics,
            "l2_inverse_strength": result.strength,
            "questions_in_base_training_scored_out_of_fold": result.in_training,
            "next": f"ladder evaluate --checkpoint {out} --data HELD_OUT.csv --pool POOL (with "
            f"{result.model} in the pool) for the routing curve with it",
        },
        json_path,
    )


def _held_out(checkpoint: Path, data: Path, pool: Path | None, model: str) -> dict[str, Any]:
    """The onboarded router judged on held-out rows, as `ladder evaluate` judges it."""
    from ladder.core.checkpoint import Checkpoint
    from ladder.core.pool import load_pool
    from ladder.training.dataset import read_canonical
    from ladder.training.evaluate import build_report, evaluation_inputs
    from ladder.training.train import training_rows

    loaded = Checkpoint.load(checkpoint)
    rows = training_rows(read_canonical([data]), "test")
    pool_config = load_pool(pool) if pool else None
    with stage_progress() as progress:
        inputs = evaluation_inputs(loaded, rows, pool_config, None, progress)
    rec = loaded.manifest.recommended
    report = build_report(inputs, rec.tolerance if rec else None)
    name = (
        next((m.name for m in pool_config.models if m.checkpoint_label == model), model)
        if pool_config
        else model
    )
    for line in report["verdict"]:
        stderr.print(line, markup=False, highlight=False)
    return {
        "questions": report["questions"],
        "new_model": report["per_model"].get(name),
        "per_model": report["per_model"],
        "router": report["router"],
        "best_single_model": report["best_single_model"],
        "cost_to_match_best_single": report["cost_to_match_best_single"],
    }


def _suggest(base: Any, dataset: Any, n: int, questions: Path, split: str | None, seed: int) -> None:
    import numpy as np

    from ladder.training.embed import embed_texts
    from ladder.training.probes import suggest, write_questions
    from ladder.training.train import training_rows

    rows = training_rows(dataset, split)
    present = [m for m in base.models if m in rows.models]
    labels = (
        rows.labels[:, [rows.models.index(m) for m in present]]
        if present
        else np.full((len(rows), 0), np.nan)
    )
    enc = base.manifest.encoder
    max_tokens = int(base.manifest.training.settings.get("max_tokens", 512))
    with stage_progress() as progress:
        x = embed_texts(rows.questions, enc.name, enc.variant, max_tokens, progress)
    picked = suggest(x, labels, n, seed)
    write_questions(rows, picked, questions)
    stderr.print(
        f"[green]wrote {len(picked)} probe questions[/green] to {questions} (diverse; where the "
        f"{len(present)} pool models disagree most). Next: ladder collect --questions {questions} ..."
    )


def calibrate(
    checkpoint: CheckpointOption,
    data: Annotated[Path, typer.Option(help="Canonical CSV: the labelled calibration sample.")],
    target: Annotated[
        str, typer.Option(help="priciest-share=0.3 | cost-per-1k=0.5 | relative-accuracy=0.98")
    ],
    pool: PricesPoolOption = None,
    write: Annotated[bool, typer.Option("--write", help="Put the tolerance into the pool file.")] = False,
    split: Annotated[str | None, typer.Option(help="Use rows with this split (when present).")] = "test",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="--write the closest tolerance even when the target is missed.")
    ] = False,
) -> None:
    """Choose the tolerance that meets a target on a labelled sample."""
    from ladder.core.checkpoint import Checkpoint
    from ladder.core.errors import DataError
    from ladder.core.pool import load_pool
    from ladder.training.calibrate import Target, rewrite_routing
    from ladder.training.calibrate import calibrate as run_calibrate
    from ladder.training.dataset import read_canonical
    from ladder.training.evaluate import evaluation_inputs
    from ladder.training.pool_edit import unified_diff, write_pool_text
    from ladder.training.train import training_rows

    goal = Target.parse(target)
    if write and pool is None:
        raise DataError("--write needs --pool FILE (the pool file to write the tolerance into)")
    loaded = Checkpoint.load(checkpoint)
    rows = training_rows(read_canonical([data]), split)
    with stage_progress() as progress:
        inputs = evaluation_inputs(loaded, rows, load_pool(pool) if pool else None, None, progress)
    result = run_calibrate(inputs, goal)
    missed = not result["target"]["met_on_sample"]
    if missed:
        stderr.print(f"[yellow]the target {target} cannot be met on this sample; closest shown[/yellow]")
    if write and missed and not force:
        _emit(result, json_path)
        raise DataError(
            f"--write: the target {target} is missed on this sample (the closest is tolerance "
            f"{result['tolerance']:g}), so {pool} is unchanged; pass --force to write it anyway, or choose a "
            "target this sample can meet"
        )
    if write and pool is not None:
        old, new = rewrite_routing(pool, result["tolerance"])
        diff = unified_diff(pool, old, new)
        if diff:
            stderr.print(diff, markup=False, highlight=False)
            write_pool_text(pool, new)
            stderr.print(f"[green]wrote[/green] {pool}")
        else:
            stderr.print(f"{pool} already has tolerance {result['tolerance']:g}")
        result["written_to"] = str(pool)
    _emit(result, json_path)
