"""Reading an answer: its multiple-choice letter, its final number, its code, its normalised text."""

from __future__ import annotations

import re
import string

LETTERS = "ABCDEFGHIJ"
_STRONG_LETTER = (
    re.compile(r"\\boxed\{\s*\(?([A-J])\)?\s*\}"),
    re.compile(r"(?:[Aa]nswer|ANSWER)\s*(?:is|:)?\s*[:\-]?\s*\**\s*\(?([A-J])\)?(?![A-Za-z])"),
    re.compile(r"(?:[Oo]ption|[Cc]hoice)\s*\(?([A-J])\)?(?![A-Za-z])"),
)
_LEADING_LETTER = re.compile(r"^\s*\**\s*\(?([A-J])(?:[\).:\]]|\s*$|\s+-)")
_PAREN_LETTER = re.compile(r"\(([A-J])\)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def is_choice_letter(reference: str) -> bool:
    return bool(re.fullmatch(r"\(?[A-Ja-j]\)?\.?", reference.strip()))


def choice_letter(text: str) -> str | None:
    """The letter an answer picks: "the answer is (C)", \\boxed{C}, "C." at the start, or a lone "(C)"."""
    for pattern in _STRONG_LETTER:
        found = pattern.findall(text)
        if found:
            return str(found[-1]).upper()
    lead = _LEADING_LETTER.match(text)
    if lead:
        return str(lead.group(1))
    parens = set(_PAREN_LETTER.findall(text))
    if len(parens) == 1:
        return str(parens.pop())
    return None


def parse_number(text: str) -> float | None:
    """A number written as text ("1,596", "$30", "12.5%"); None when it is not one."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip("%").strip()
    try:
        return float(cleaned)
    except ValueError:
        return None


def final_number(text: str) -> float | None:
    """An answer's number: the last \\boxed{...} that holds one, else the last number in the text."""
    for boxed in reversed(_BOXED.findall(text)):
        value = parse_number(boxed)
        if value is not None:
            return value
    numbers = _NUMBER.findall(text)
    for raw in reversed(numbers):
        value = parse_number(raw)
        if value is not None:
            return value
    return None


def code_of(text: str) -> str:
    """An answer's program: the first fenced block defining something, else the first block, else all."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    for body in blocks:
        if "def " in body or "class " in body:
            return str(body)
    return str(blocks[0]) if blocks else text


def normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's answer normalisation)."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def vote_key(text: str) -> str:
    """What answers are compared on when voting: the choice letter, else the final number, else the text."""
    letter = choice_letter(text)
    if letter is not None:
        return f"choice:{letter}"
    number = final_number(text)
    if number is not None:
        return f"number:{number:.6g}"
    return f"text:{normalise(text)}"
