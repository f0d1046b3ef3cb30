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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ladder.cli.progress import LOG_EVERY_SECONDS, stderr

StoreOption = Annotated[
    str, typer.Option("--store", help="SQLite file, or a database URL (postgresql+psycopg://...).")
]


@contextmanager
def _spend_progress(label: str) -> Iterator[Callable[[int, int, float], None]]:
    """A bar with ETA and the running cost on a terminal; a line every 10 s in a log."""
    if stderr.is_terminal:
        columns = (
            TextColumn(label),
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


def _estimate_table(result: dict[str, Any]) -> Table:
    table = Table(
        title=f"Dry-run estimate: {result['questions']} questions (sample of {result['sample_questions']})"
    )
    for column in ("model", "calls", "left", "input tok", "output tok", "cost $", "left $", "s/call", "time"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in result["models"]:
        warn = (
            f" ({row['sample_failures']} of {row['sample_answers']} failed)" if row["sample_failures"] else ""
        )
        table.add_row(
            row["model"] + warn,
            str(row["calls"]),
            str(row["remaining_calls"]),
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            f"{row['cost_usd']:.4f}",
            f"{row['remaining_cost_usd']:.4f}",
            f"{row['mean_latency_s']:.2f}",
            f"{row['time_s'] / 60:.1f} min",
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
        f"{total['time_s'] / 60:.1f} min",
    )
    return table


def _report_table(report: dict[str, Any]) -> Table:
    table = Table(title="Collected")
    for column in (
        "model",
        "answered",
        "failed (not judged)",
        "call errors (retry later)",
        "retries",
        "cost $",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, row in report["models"].items():
        failed = "; ".join(f"{n} {why}" for why, n in row["failed"].items()) or "0"
        errors = "; ".join(f"{n} {why}" for why, n in row["errors"].items()) or "0"
        table.add_row(
            name, str(row["answered"]), failed, errors, str(row["retries"]), f"{row['cost_usd']:.4f}"
        )
    return table


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

    config = load_pool(pool)
    chosen = select_models(config, [m.strip() for m in models.split(",") if m.strip()] if models else None)
    check_keys(chosen)
    items = read_questions(questions)
    answers = AnswerStore(store, create=True)
    answers.bind_pool(config, str(pool))
    answers.add_questions(items)
    settings = CallSettings(max_tokens=max_tokens, timeout_s=timeout, retries=retries)
    asked = sample_questions(items) if dry_run else items
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
                )
            )
    except KeyboardInterrupt:
        stderr.print(
            "[yellow]interrupted:[/yellow] every answer received is stored; run the same command to continue"
        )
        sys.exit(130)
    result: dict[str, Any] = report.to_dict()
    stderr.print(_report_table(result))
    if report.stopped_by_budget:
        stderr.print(
            f"[yellow]stopped by the budget[/yellow] (${budget:g}): {report.not_started} calls not made; "
            f"${report.spent_usd:.4f} spent in this store"
        )
    errors = sum(sum(m.errors.values()) for m in report.models.values())
    if errors:
        stderr.print(f"[yellow]{errors} calls gave no answer[/yellow]: run the same command to retry them")
    if dry_run:
        result = estimate(chosen, items, asked, list(answers.answers()), answers.answered(), concurrency)
        stderr.print(_estimate_table(result))
        typer.echo(json.dumps(result, indent=2))
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    answers.close()


def judge(
    store: StoreOption,
    judge: Annotated[str, typer.Option("--judge", help="reference | llm | vote")],
    out: Annotated[Path, typer.Option(help="Canonical CSV to write.")],
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
    test_fraction: Annotated[
        float | None, typer.Option(help="Add a split column: this share of question ids becomes 'test'.")
    ] = None,
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
    for column in ("model", "labelled", "unknown", "failed answers (not judged)", "accuracy"):
        table.add_column(column, justify="left" if column == "model" else "right")
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
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
