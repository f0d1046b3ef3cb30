"""`ladder evaluate-confidence`: calibrated cascades on data with answer confidences, beside their baselines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from ladder.cli.progress import stage_progress, stderr


def evaluate_confidence(
    data: Annotated[list[Path], typer.Option("--data", help="Canonical CSV file(s) with answer_logprob and split.")],
    out: Annotated[Path, typer.Option(help="Folder for report.json and curve.png.")],
    encoder: Annotated[str, typer.Option(help="Encoder for the prompt embeddings (cached).")] = "multilingual-e5-small",
    prompts: Annotated[
        str,
        typer.Option(
            help="Prompt features: 'encoder' (the router's encoder) or 'words' (tf-idf axes fitted on the "
            "training prompts: seconds instead of the encoder's minutes on a CPU)"
        ),
    ] = "encoder",
    write_plan: Annotated[
        Path | None,
        typer.Option(
            "--write-plan",
            help="Put the recommended plan, in the form the gateway serves (the report's served_plan), into "
            "this pool file's routing.cascade.plan.",
        ),
    ] = None,
) -> None:
    """Tune the router and calibrated cascade on the training rows; report every plan on the held-out rows."""
    import numpy as np

    from ladder.core.atomic import partial_file
    from ladder.core.errors import ConfigError, DataError
    from ladder.training.confidence import word_prompts
    from ladder.training.confidence_plot import plot_confidence
    from ladder.training.confidence_report import evaluate_confidence_plan as run
    from ladder.training.dataset import read_canonical
    from ladder.training.embed import embed_texts

    pool_models: tuple[str, ...] = ()
    if write_plan is not None:
        from ladder.core.pool import load_pool

        pool_models = load_pool(write_plan).names  # a pool file that cannot take the plan fails before the work
    dataset = read_canonical(data)
    if dataset.answer_logprobs is None:
        raise DataError(
            f"{', '.join(map(str, data))}: no answer_logprob column; a calibrated cascade needs each model's "
            "confidence in its answer (import a format that records it, e.g. cascades-llama)"
        )
    found = {s for s in dataset.splits if s}
    if not {"train", "test"} <= found:
        raise DataError(
            f"{', '.join(map(str, data))}: needs a split column with train and test rows, found "
            f"{sorted(found) or 'none'} (re-import with --test-fraction)"
        )
    if write_plan is not None:
        plan_target(write_plan, pool_models, dataset.models)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot make this folder ({exc.strerror})") from exc
    if prompts == "words":
        features = word_prompts(dataset.questions, np.array([s == "train" for s in dataset.splits]))
    elif prompts == "encoder":
        with stage_progress() as progress:
            features = embed_texts(dataset.questions, encoder, progress=progress)
    else:
        raise DataError(f"--prompts must be 'encoder' or 'words', got {prompts!r}")
    report, plan = run(dataset, features)
    report["prompt_features"] = f"tf-idf ({features.shape[1]} axes)" if prompts == "words" else f"encoder {encoder}"
    try:
        with partial_file(out / "report.json") as partial:
            partial.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        plot_confidence(report, out / "curve.png")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the report ({exc.strerror})") from exc
    ref = report["reference"]
    for name, figures in report["plans"].items():  # not `plan`: that is the plan to write
        half = figures["chosen_on_training_at_half_cost"]
        stderr.print(
            f"{name:46s} match {ref['model']} at {figures['cost_to_match']} of its cost "
            f"(90% interval {figures['cost_to_match_interval']}); at half its cost: "
            f"{half['accuracy'] if half else None}"
        )
    stderr.print(f"recommended: {report['recommendation']['recommended']}; wrote {out}/report.json, curve.png")
    if write_plan is not None:
        from ladder.training.pool_edit import rewrite_cascade, write_pool_text

        _, new = rewrite_cascade(write_plan, {"logprobs": True, "plan": plan.model_dump(mode="json")})
        try:
            write_pool_text(write_plan, new)
        except OSError as exc:
            raise ConfigError(f"{write_plan}: cannot write the plan into it ({exc.strerror}); left as it was") from exc
        held = report["served_plan"]["held_out"]
        stderr.print(
            f"wrote routing.cascade.plan into {write_plan} (held out as served: accuracy {held['accuracy']}, "
            f"{held['cost_share']} of {ref['model']}'s cost)"
        )


def plan_target(path: Path, pool_models: Sequence[str], data_models: Sequence[str]) -> None:
    """Refuse, before the work, a pool file the plan cannot go into: one that lacks a model of the data
    (the plan is over every model of the data), or one that cannot be replaced."""
    import os

    from ladder.core.errors import ConfigError

    missing = [m for m in data_models if m not in pool_models]
    if missing:
        raise ConfigError(
            f"{path}: has no model {', '.join(map(repr, missing))}; the plan is over every model of the data "
            f"({', '.join(data_models)}): add them to the pool file, or evaluate data of its models only"
        )
    for where in (path, path.parent):
        if not os.access(where, os.W_OK):
            raise ConfigError(f"{path}: cannot write the plan into it ({where} is not writable)")
