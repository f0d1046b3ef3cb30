"""Bounds on a JSON body checked before it is parsed: nesting depth and item count cap its memory."""

from __future__ import annotations

import re

from ladder.gateway.errors import InvalidRequestError

# a string (skipped whole, so brackets and commas inside it do not count), a bracket or a comma
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]')
_OPENERS = frozenset(b"[{")


def check_json_bounds(raw: bytes, max_depth: int, max_items: int) -> None:
    """400 when arrays/objects nest deeper than ``max_depth`` or the body holds more than ``max_items``
    containers and elements: a few MiB of ``[[],[],...]`` would otherwise take hundreds of MiB once parsed.
    Stops at the first excess, so a hostile body costs no more than the limits allow."""
    openers = raw.count(b"[") + raw.count(b"{")
    if openers <= max_depth and openers + raw.count(b",") <= max_items:
        return  # cannot exceed either bound, whatever is in strings
    depth = 0
    items = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token[0] == 0x22:  # a string
            continue
        items += 1
        if token[0] in _OPENERS:
            depth += 1
            if depth > max_depth:
                raise InvalidRequestError(
                    f"the request body nests arrays and objects more than {max_depth} levels deep"
                )
        elif token in (b"]", b"}"):
            depth -= 1
        if items > max_items:
            raise InvalidRequestError(
                f"the request body has more than {max_items:,} JSON arrays, objects and elements"
            )
