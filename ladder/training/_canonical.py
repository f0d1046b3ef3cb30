"""Reading and writing the canonical long CSV (plain or .csv.gz); errors name the file, line and column."""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ladder.core.atomic import partial_file
from ladder.core.errors import DataError
from ladder.training._builder import RoutingDataBuilder
from ladder.training._cells import cell_number
from ladder.training._table import CANONICAL_COLUMNS, RoutingData

REQUIRED_COLUMNS = ("question_id", "question", "model", "correct")
"""Columns every canonical file must have; the others (cost_usd, output_tokens, task, split, answer,
answer_logprob, confidence_kind, confidence_cost_usd, latency_ms, input_tokens) are optional."""

_NUMBER_COLUMNS = ("cost_usd", "output_tokens", "confidence_cost_usd", "latency_ms", "input_tokens")

# Quoted questions can be long (a few pages of context); lift the csv module's 128 KiB default.
csv.field_size_limit(64 * 1024 * 1024)


def open_text(path: Path) -> TextIO:
    """Open a UTF-8 text file for reading, transparently gunzipping `*.gz`; DataError when it cannot."""
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
        return path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a directory, expected a file") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc}") from exc


def _as_paths(paths: Path | str | Sequence[Path | str]) -> list[Path]:
    if isinstance(paths, str | Path):
        return [Path(paths)]
    return [Path(p) for p in paths]


def read_canonical(paths: Path | str | Sequence[Path | str]) -> RoutingData:
    """Read and merge canonical CSV files (`*.csv` or `*.csv.gz`) into one RoutingData.

    A (question, model) pair without a row stays unknown (NaN). The same question_id in several files
    must carry the same text; the same (question_id, model) pair twice is an error naming both places.
    """
    files = _as_paths(paths)
    if not files:
        raise DataError("no canonical data files given")
    builder = RoutingDataBuilder()
    for path in files:
        _read_file(path, builder)
    return builder.build()


def _number(text: str, column: str, where: str, minus_infinity: bool = False) -> float:
    """A finite float from a cell (or -inf where `minus_infinity`); NaN for an empty cell; DataError naming
    the place otherwise."""
    if minus_infinity:
        return cell_number(text, where, column, lambda v: math.isfinite(v) or v == -math.inf, "finite or -inf")
    return cell_number(text, where, column, math.isfinite, "finite")


def _read_file(path: Path, builder: RoutingDataBuilder) -> None:
    line = 1
    with open_text(path) as handle:
        try:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: file is empty (expected a header: {','.join(CANONICAL_COLUMNS)})")
            columns = [c.strip() for c in header]
            index = _check_header(path, columns)
            width = len(columns)
            at = {c: index.get(c, width) for c in CANONICAL_COLUMNS}  # width: the "" appended below
            i_qid, i_text, i_model, i_correct = (at[c] for c in REQUIRED_COLUMNS)
            line_end, rows = reader.line_num, 0
            for record in reader:
                line, line_end = line_end + 1, reader.line_num
                if not record:
                    continue
                where = f"{path}:{line}"
                if len(record) != width:
                    raise DataError(f"{where}: expected {width} fields, found {len(record)}")
                record.append("")  # what an absent optional column reads as
                label = _number(record[i_correct], "correct", where)
                if math.isnan(label):
                    raise DataError(f"{where}: correct is empty (leave the row out for an unknown label)")
                row = builder.question(
                    record[i_qid].strip(),
                    record[i_text],
                    task=record[at["task"]].strip() or None,
                    split=record[at["split"]].strip() or None,
                    where=where,
                )
                builder.cell(
                    row,
                    record[i_model].strip(),
                    label,
                    answer=record[at["answer"]] or None,
                    answer_logprob=_number(record[at["answer_logprob"]], "answer_logprob", where, True),
                    confidence_kind=record[at["confidence_kind"]].strip() or None,
                    **{c: _number(record[at[c]], c, where) for c in _NUMBER_COLUMNS},
                    where=where,
                )
                rows += 1
        except (csv.Error, UnicodeDecodeError, EOFError, OSError) as exc:
            raise DataError(f"{path}:{line}: cannot read: {exc}") from exc
    if rows == 0:
        raise DataError(f"{path}: no data rows after the header")


def _check_header(path: Path, columns: list[str]) -> dict[str, int]:
    found = ", ".join(columns)
    for column in REQUIRED_COLUMNS:
        if column not in columns:
            raise DataError(f"{path}: missing required column {column!r}; columns found: {found}")
    unknown = [c for c in columns if c not in CANONICAL_COLUMNS]
    if unknown:
        raise DataError(
            f"{path}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"canonical columns are {', '.join(CANONICAL_COLUMNS)}"
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"{path}: column(s) {', '.join(map(repr, repeated))} appear more than once")
    return {c: i for i, c in enumerate(columns)}


def write_canonical(data: RoutingData, path: Path | str) -> Path:
    """Write `data` as canonical CSV (gzip when the name ends in .gz), atomically.

    The text goes to a temporary file beside `path`, which is renamed over `path` only once complete:
    readers see the old file or the new one, never half of one. Gzip output is byte-for-byte
    reproducible (no timestamp). Returns the path written.
    """
    path = Path(path)
    with partial_file(path) as partial, partial.open("xb") as raw:
        if path.suffix == ".gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                for chunk in data.iter_text():
                    packed.write(chunk.encode("utf-8"))
        else:
            for chunk in data.iter_text():
                raw.write(chunk.encode("utf-8"))
        raw.flush()
        os.fsync(raw.fileno())
    return path
