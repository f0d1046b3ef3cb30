"""`ladder collect` (ask a pool your questions, resumably) and `ladder judge` (label the answers)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ladder.cli.options import CanonicalOutOption, SplitOption, StoreOption
from ladder.cli.output import write_text
from ladder.cli.progress import LOG_EVERY_SECONDS, stderr


@contextmanager
def _spend_progress(label: str) -> Iterator[Callable[[int, int, float], None]]:
    """A bar with ETA and the running cost on a terminal; a line every 10 s in a log."""
    if stderr.is_terminal:
        columns = (
            TextColumn(f"{label}: calls"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("${task.fields[cost]:.4f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=stderr) as progress:
            task = progress.add_task(label, total=None, cost=0.0)

            def bar(done: int, total: int, cost: float) -> None:
                progress.update(task, completed=done, total=total, cost=cost)

            yield bar
        return
    started, last = time.monotonic(), 0.0

    def line(done: int, total: int, cost: float) -> None:
        nonlocal last
        now = time.monotonic()
        if done in (0, total) or now - last >= LOG_EVERY_SECONDS:
            last = now
            elapsed = now - started
            eta = f", ETA {elapsed / done * (total - done):.0f}s" if done else ""
            stderr.print(
                f"[{elapsed:6.1f}s] {label}: {done}/{total} calls, ${cost:.4f} spent{eta}",
                highlight=False,
                markup=False,
            )

    yield line


def duration(seconds: float) -> str:
    """Seconds under a minute, minutes under an hour, then hours."""
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _model_column(table: Table, names: list[str]) -> None:
    """The model column never cuts a name: it is as wide as the longest one."""
    table.add_column("model", no_wrap=True, min_width=max([len("model"), *map(len, names)]))


def _estimate_table(result: dict[str, Any]) -> Table:
    table = Table(
        title=f"Dry-run estimate: {result['questions']} questions (sample of {result['sample_questions']})"
    )
    _model_column(table, [row["model"] for row in result["models"]])
    for column in ("calls", "left", "in tok", "out tok", "cost $", "left $", "s/call", "time"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in result["models"]:
        if row["sample_answers"] == 0:
            flag = " !"
        elif row["sample_failures"]:
            flag = f" ({row['sample_failures']}/{row['sample_answers']} failed)"
        else:
            flag = ""
        table.add_row(
            row["model"] + flag,
            str(row["calls"]),
            str(row["remaining_calls"]),
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            f"{row['cost_usd']:.4f}",
            f"{row['remaining_cost_usd']:.4f}",
            f"{row['mean_latency_s']:.2f}",
            duration(row["time_s"]),
        )
    total = result["total"]
    table.add_row(
        "total",
        str(total["calls"]),
        str(total["remaining_calls"]),
        "",
        "",
        f"{total['cost_usd']:.4f}",
        f"{total['remaining_cost_usd']:.4f}",
        "",
        duration(total["time_s"]),
    )
    return table


def _report_table(report: dict[str, Any]) -> tuple[Table, list[str]]:
    """The per-model counts, and one line per reason (reasons are too long for a column at 80 columns)."""
    table = Table(title="Collected")
    _model_column(table, list(report["models"]))
    for column in ("answered", "failed", "no answer", "skipped", "retries", "cost $"):
        table.add_column(column, justify="right", no_wrap=True)
    reasons: list[str] = []
    for name, row in report["models"].items():
        failed, errors, skipped = (sum(row[k].values()) for k in ("failed", "errors", "skipped"))
        table.add_row(
            name,
            str(row["answered"]),
            str(failed),
            str(errors),
            str(skipped),
            str(row["retries"]),
            f"{row['cost_usd']:.4f}",
        )
        reasons += [f"{name}: {n} skipped (never sent, not a failure): {why}" for why, n in row["skipped"].items()]
        reasons += [f"{name}: {n} failed (stored, not judged): {why}" for why, n in row["failed"].items()]
        reasons += [f"{name}: {n} gave no answer (retried next run): {why}" for why, n in row["errors"].items()]
    return table, reasons


def collect(
    pool: Annotated[Path, typer.Option(help="Pool file: the models to ask.")],
    questions: Annotated[Path, typer.Option(help="Questions: text (one a line) or JSONL.")],
    store: StoreOption,
    models: Annotated[str | None, typer.Option(help="Comma-separated subset of the pool.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Ask ~5 questions of every model and estimate the full run.")
    ] = False,
    budget: Annotated[
        float | None, typer.Option(min=0, help="Stop before the store's total spend would pass this (USD).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Calls in flight per upstream host.")] = 4,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of each call.")] = 512,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per call attempt.")] = 120.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries of a failed call (5xx, 429, timeout).")] = 4,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the report or estimate here.")
    ] = None,
) -> None:
    """Ask every question of every pool model and store the answers (resumable: re-run to continue)."""
    from ladder.core.pool import load_pool
    from ladder.training.collect import (
        AnswerStore,
        CallSettings,
        check_keys,
        estimate,
        read_questions,
        sample_questions,
        select_models,
    )
    from ladder.training.collect import collect as run_collect
    from ladder.training.collect.runner import mark_sensitive, withheld

    config = load_pool(pool)
    chosen = select_models(config, [m.strip() for m in models.split(",") if m.strip()] if models else None)
    check_keys(chosen)
    items = read_questions(questions)  # stored as the file has them: the pool's patterns may change
    answers = AnswerStore(store, create=True)
    answers.bind_pool(config, str(pool))
    answers.add_questions(items)
    settings = CallSettings(max_tokens=max_tokens, timeout_s=timeout, retries=retries)
    asked = sample_questions(items) if dry_run else items
    stored = answers.answered()
    refused = withheld(mark_sensitive(items, config.sensitive_patterns), chosen)
    if not dry_run and all((q.id, m.name) in stored or (q.id, m.name) in refused for q in items for m in chosen):
        stderr.print(
            f"all {len(items) * len(chosen)} calls already stored ({len(items)} questions x {len(chosen)} "
            f"models) in {store}: nothing to ask"
        )
        answers.close()
        return
    try:
        with _spend_progress("dry run" if dry_run else "collect") as progress:
            report = asyncio.run(
                run_collect(
                    answers,
                    chosen,
                    asked,
                    settings,
                    concurrency=concurrency,
                    budget_usd=budget,
                    progress=progress,
                    sensitive_patterns=config.sensitive_patterns,
                )
            )
    except KeyboardInterrupt:
        stderr.print(
            "[yellow]interrupted:[/yellow] every answer received is stored; run the same command to continue"
        )
        sys.exit(130)
    result: dict[str, Any] = report.to_dict()
    table, reasons = _report_table(result)
    stderr.print(table)
    for reason in reasons:
        stderr.print(reason, highlight=False, markup=False)
    for name, row in report.models.items():
        if row.stopped:
            stderr.print(
                f"[red]stopped asking {escape(name)}[/red]: {escape(row.stopped)}; {row.not_asked} calls not "
                "made. Check the model's upstream (base_url, key, is it running?), then run the same command",
                highlight=False,
            )
    if report.stopped_by_budget:
        stderr.print(
            f"[yellow]stopped by the budget[/yellow] (${budget:g}): {report.not_started} calls not made; "
            f"${report.spent_usd:.4f} spent in this store"
        )
    errors = sum(sum(m.errors.values()) + m.not_asked for m in report.models.values())
    if errors:
        stderr.print(f"[yellow]{errors} calls gave no answer[/yellow]: run the same command to retry them")
    unanswered: list[str] = []
    if dry_run:
        result = estimate(chosen, items, asked, list(answers.answers()), answers.answered(), concurrency)
        result["skipped"] = {name: row.to_dict()["skipped"] for name, row in report.models.items()}
        stderr.print(_estimate_table(result))
        unanswered = [row["model"] for row in result["models"] if row["sample_answers"] == 0]
        if unanswered:
            stderr.print(
                f"[red]! no answer from {', '.join(unanswered)}[/red]: the estimate for "
                f"{'it' if len(unanswered) == 1 else 'them'} is made from nothing (see the reasons above)",
                highlight=False,
            )
        typer.echo(json.dumps(result, indent=2))
    if json_path:
        write_text(json_path, json.dumps(result, indent=2) + "\n")
    answers.close()
    if errors or unanswered:
        raise typer.Exit(1)


def judge(
    store: StoreOption,
    judge: Annotated[str, typer.Option("--judge", help="reference | llm | vote")],
    out: CanonicalOutOption,
    judge_model: Annotated[str | None, typer.Option(help="llm: the judging model, from --pool.")] = None,
    pool: Annotated[Path | None, typer.Option(help="llm: the pool file the judge model is in.")] = None,
    allow_self_judge: Annotated[
        bool, typer.Option("--allow-self-judge", help="llm: let a pool participant judge.")
    ] = False,
    pairwise: Annotated[
        bool, typer.Option("--pairwise", help="llm: compare answers in pairs, both orders.")
    ] = False,
    graded: Annotated[
        bool, typer.Option("--graded", help="llm: a score in [0, 1], not right/wrong.")
    ] = False,
    test_fraction: SplitOption = None,
    seed: int = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report here.")] = None,
    unsafe_code: Annotated[
        bool,
        typer.Option(
            "--unsafe-code",
            help="reference: where no bubblewrap jail works, run answer code unconfined, as this user.",
        ),
    ] = False,
) -> None:
    """Label the stored answers (the pool models are not called again) and write canonical CSV."""
    from ladder.core.errors import ConfigError
    from ladder.core.pool import load_pool
    from ladder.training.collect import AnswerStore, CallSettings
    from ladder.training.judge import JUDGES, ReferenceJudge, judge_store, llm_judge

    if judge not in JUDGES:
        raise ConfigError(f"--judge {judge!r}: choose one of {', '.join(JUDGES)}")
    answers = AnswerStore(store, create=False)
    llm, notes = None, list[str]()
    if judge == "llm":
        config = load_pool(pool) if pool else None
        llm, notes = llm_judge(
            answers,
            config,
            judge_model,
            allow_self_judge=allow_self_judge,
            graded=graded,
            pairwise=pairwise,
            settings=CallSettings(max_tokens=256, timeout_s=120.0),
        )
        from ladder.training.collect import check_keys

        check_keys([llm.spec])
    elif pairwise or graded or judge_model:
        raise ConfigError("--judge-model, --pairwise and --graded apply to --judge llm only")
    if unsafe_code and judge != "reference":
        raise ConfigError("--unsafe-code applies to --judge reference only (the judge that runs answer code)")
    report = judge_store(
        answers,
        judge,
        out,
        judge=llm,
        notes=notes,
        reference=ReferenceJudge(unsafe_code=unsafe_code),
        test_fraction=test_fraction,
        seed=seed,
    )
    answers.close()
    result = report.to_dict()
    table = Table(title=f"Labels by {report.judge}")
    _model_column(table, list(result["models"]))
    for column in ("labelled", "unknown", "failed (not judged)", "accuracy"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, row in result["models"].items():
        accuracy = "" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        table.add_row(
            name, str(row["labelled"]), str(row["unknown"]), str(row["failed_answers_not_judged"]), accuracy
        )
    stderr.print(table)
    for note in report.notes:
        stderr.print(f"note: {note}", highlight=False, markup=False)
    stderr.print(f"wrote {out}")
    if json_path:
        write_text(json_path, json.dumps(result, indent=2) + "\n")
