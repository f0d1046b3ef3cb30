"""Numbers from CSV cells: NaN for an empty cell, a DataError naming the place for anything else amiss."""

from __future__ import annotations

import math
from collections.abc import Callable

from ladder.core.errors import DataError


def cell_number(text: str, where: str, column: str, accept: Callable[[float], bool], expected: str) -> float:
    """The cell's number when ``accept`` takes it; NaN for an empty cell; DataError (``where``, ``column``,
    ``expected``) otherwise."""
    value = text.strip()
    if not value:
        return math.nan
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"{where}: {column} is not a number: {value!r}") from None
    if not accept(number):
        raise DataError(f"{where}: {column} must be {expected}, got {value!r}")
    return number
