"""Whether a request is sensitive: configured patterns over every key and string in it, read as a person would.

A person reading a prompt does not see a zero-width space, a soft hyphen or a joiner inside a word, reads a
full-width ``Ｐｒｏｊｅｃｔ`` or a PDF ligature ``ﬁ`` as plain letters and a line break as a space. So each
string (object keys included: a JSON-schema property or a metadata key is forwarded too) is matched twice:
as sent, and *folded* (default-ignorable characters removed, NFKC, case folded, whitespace runs as one
space). Strings that are themselves JSON (tool-call arguments) are decoded and read the same way. Patterns
are matched case-insensitively. Pure functions: the gateway decides once per request, training can reuse it.

Not read: images, audio and other binary parts, and any encoded payload (base64, data URLs, percent or
HTML escapes), and look-alike letters from other scripts (a Cyrillic ``а`` is not folded into ``a``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# default-ignorable code points outside category Cf (combining grapheme joiner, Hangul fillers, Khmer
# inherent vowels, Mongolian variation selectors, variation selectors): invisible, so read as nothing
IGNORABLE = frozenset(
    (
        0x034F,
        0x115F,
        0x1160,
        0x17B4,
        0x17B5,
        0x3164,
        0xFFA0,
        *range(0x180B, 0x1810),
        *range(0xFE00, 0xFE10),
        *range(0xE0100, 0xE01F0),
    )
)
WHITESPACE = re.compile(r"\s+")
ASCII_SPACES = ("\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")  # \s besides " "
MAX_JSON_DEPTH = 2  # JSON inside a string inside a string: deeper is not decoded
MAX_JSON_STRING = 1 << 20


def _invisible(char: str) -> bool:
    return unicodedata.category(char) == "Cf" or ord(char) in IGNORABLE


def fold(text: str) -> str:
    """``text`` as a person reads it: format and other invisible characters dropped, NFKC (full-width forms
    and ligatures become plain letters), case folded, whitespace runs as one space."""
    if text.isascii():
        return WHITESPACE.sub(" ", text.lower())
    visible = "".join(c for c in text if not _invisible(c))
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
    return WHITESPACE.sub(" ", "".join(c for c in folded if not _invisible(c)))


def _folded(text: str) -> str | None:
    """``fold(text)`` where a case-insensitive match could differ from one on ``text`` itself, else None
    (plain ASCII with single spaces: the common case, searched once)."""
    if text.isascii():
        odd = "  " in text or any(space in text for space in ASCII_SPACES)
        return WHITESPACE.sub(" ", text) if odd else None
    return fold(text)


def _decoded(text: str) -> Any:
    """The JSON value a string holds (tool-call arguments), or None."""
    if len(text) > MAX_JSON_STRING or not text or text[0] not in "{[ \t\r\n" or text.lstrip()[:1] not in "{[":
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def request_texts(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value, at any depth: object keys and values, list items, and the keys and
    strings of JSON documents held in strings (tool-call arguments)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            yield item
            if depth < MAX_JSON_DEPTH:
                inner = _decoded(item)
                if isinstance(inner, dict | list):
                    stack.append((inner, depth + 1))
        elif isinstance(item, Mapping):
            for key, child in item.items():
                stack.append((key, depth))
                stack.append((child, depth))
        elif isinstance(item, list | tuple):
            stack.extend((child, depth) for child in item)


def check_patterns(patterns: Sequence[str]) -> None:
    """Refuse the first pattern that is not a regular expression, with a ``ValueError`` (a config validator's
    error) naming it."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc


def compile_patterns(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """The configured regexes, case-insensitive (folded text is lower case); a bad one raises ``re.error``."""
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


@dataclass(frozen=True)
class SensitiveScan:
    """The configured sensitive patterns, matched over everything a request would forward."""

    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, patterns: Sequence[str]) -> SensitiveScan:
        return cls(compile_patterns(patterns))

    def match(self, value: Any) -> str | None:
        """The first pattern (its source) that matches any string in ``value``, as sent or folded."""
        if not self.patterns:
            return None
        for text in request_texts(value):
            folded = _folded(text)
            for pattern in self.patterns:
                if pattern.search(text) or (folded is not None and pattern.search(folded)):
                    return pattern.pattern
        return None

    def matches(self, value: Any) -> bool:
        return self.match(value) is not None
