"""Helpers shared by the importers: stable ids, strict JSON/CSV reading, label parsing."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ladder.core.errors import DataError
from ladder.training._cells import cell_number
from ladder.training.dataset import open_text


def text_id(text: str) -> str:
    """A stable question id from its text: the first 16 hex digits of its sha256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def require_dir(path: Path, fmt: str, needs: Sequence[str]) -> Path:
    """`path` as a directory holding `needs`; DataError saying what the format expects otherwise."""
    expected = f"the {fmt} format expects a folder with {', '.join(needs)}"
    if not path.exists():
        raise DataError(f"{path}: no such file or folder ({expected})")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder ({expected})")
    missing = [n for n in needs if not (path / n).exists()]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} ({expected})")
    return path


def parse_label(text: str, where: str, column: str) -> float:
    """A label from `True`/`False` or a number in [0, 1]; NaN (unknown) for an empty cell."""
    value = text.strip()
    if not value or value.lower() in ("nan", "none", "null"):
        return math.nan
    lowered = value.lower()
    if lowered == "true":
        return 1.0
    if lowered == "false":
        return 0.0
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"{where}: {column} is not a boolean or a number: {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise DataError(f"{where}: {column} must be in [0, 1], got {value!r}")
    return number


def parse_number(text: str, where: str, column: str) -> float:
    """A non-negative finite number, or NaN for an empty cell."""
    return cell_number(text, where, column, lambda v: 0.0 <= v < math.inf, "a non-negative number")


def read_json(path: Path) -> Any:
    """A whole JSON document; DataError with the line and column of a syntax error."""
    with open_text(path) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text: {exc}") from exc


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines file."""
    with open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc
                if not isinstance(item, dict):
                    raise DataError(f"{path}:{number}: expected a JSON object, got {type(item).__name__}")
                yield number, item
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text: {exc}") from exc


def field(item: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`item[key]`, which must exist and be of `kind` (a bool never counts as a number)."""
    if key not in item:
        raise DataError(f"{where}: missing key {key!r}; keys found: {', '.join(item)}")
    value = item[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise DataError(f"{where}: {key!r} should be {expected}, got {type(value).__name__}")
    return value


class CsvRows:
    """A CSV file read as (line number, {column: value}) rows, with the header checked up front."""

    def __init__(self, path: Path, required: Sequence[str]) -> None:
        self.path = path
        self._handle = open_text(path)
        self._reader = csv.reader(self._handle)
        try:
            header = next(self._reader, None)
        except (csv.Error, UnicodeDecodeError, OSError, EOFError) as exc:
            self._handle.close()
            raise DataError(f"{path}:1: cannot read: {exc}") from exc
        if header is None:
            self._handle.close()
            raise DataError(f"{path}: file is empty")
        self.columns = [c.strip() for c in header]
        for column in required:
            if column not in self.columns:
                self._handle.close()
                raise DataError(
                    f"{path}: missing required column {column!r}; columns found: {', '.join(self.columns)}"
                )

    def close(self) -> None:
        """Release the file without reading on (iterating to the end closes it too)."""
        self._handle.close()

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        line_end, width = self._reader.line_num, len(self.columns)
        with self._handle:
            try:
                for record in self._reader:
                    line, line_end = line_end + 1, self._reader.line_num
                    if not record:
                        continue
                    if len(record) != width:
                        raise DataError(f"{self.path}:{line}: expected {width} fields, found {len(record)}")
                    yield line, dict(zip(self.columns, record, strict=True))
            except (csv.Error, UnicodeDecodeError, OSError, EOFError) as exc:
                raise DataError(f"{self.path}:{line_end + 1}: cannot read: {exc}") from exc
