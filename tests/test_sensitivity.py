"""The sensitivity scan (pure): every key and string, read as a person would, matched case-insensitively."""

from __future__ import annotations

import json

import pytest

from ladder.core.sensitivity import SensitiveScan, fold, request_texts

SCAN = SensitiveScan.of([r"project\s+firefly"])


@pytest.mark.parametrize(
    "disguised",
    [
        "Ｐｒｏｊｅｃｔ Ｆｉｒｅｆｌｙ",  # full width
        "Project Fire\u200bfly",  # zero-width space
        "Pro\u00adject Fire\u00adfly",  # soft hyphens
        "Project Fire\ufb02y",  # PDF ligature
        "PROJECT\u00a0FIRE\u200dFLY",  # no-break space, joiner, upper case
        "project\n\n  firefly",  # a line break and spaces
        "Project Fire\ufe0ffly",  # a variation selector
    ],
)
def test_a_disguised_marker_is_read_anywhere(disguised: str) -> None:
    assert fold(disguised) == "project firefly" or SCAN.matches(disguised)
    assert SCAN.matches({"messages": [{"role": "user", "content": f"Notes on {disguised}"}]})
    assert SCAN.matches({"metadata": {disguised: 1}})  # an object key
    assert SCAN.matches({"schema": {"properties": {disguised: {"type": "string"}}}})
    arguments = json.dumps({"q": disguised})  # JSON inside a string, \\u-escaped
    assert SCAN.matches({"tool_calls": [{"function": {"arguments": arguments}}]})


def test_ordinary_text_is_not_sensitive_and_no_patterns_match_nothing() -> None:
    body = {"messages": [{"role": "user", "content": "Project timelines for the fire drill"}]}
    assert not SCAN.matches(body)
    assert SensitiveScan.of([]).match({"x": "Project Firefly"}) is None
    assert SCAN.match({"x": "project firefly"}) == r"project\s+firefly"


def test_every_key_and_string_is_read_once_deep_nesting_included() -> None:
    deep: object = "leaf"
    for _ in range(5000):  # no recursion: a deep body cannot overflow the stack
        deep = [deep]
    texts = list(request_texts({"a": {"b": ["c", 1, None]}, "d": deep}))
    assert sorted(texts) == ["a", "b", "c", "d", "leaf"]
