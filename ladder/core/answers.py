"""Reading an answer: its option letter, its final number, its text folded for comparison, and agreement."""

from __future__ import annotations

import re
import string
import unicodedata

LETTERS = "ABCDEFGHIJ"
SHORT_ANSWER = 32
"""Answers up to this many characters (folded) are compared exactly; longer ones as free text."""

_STRONG_LETTER = (
    re.compile(r"\\boxed\{\s*\(?([A-J])\)?\s*\}"),
    re.compile(r"(?:[Aa]nswer|ANSWER)\s*(?:is|:)?\s*[:\-]?\s*\**\s*\(?([A-J])\)?(?![A-Za-z])"),
    re.compile(r"(?:[Oo]ption|[Cc]hoice)\s*\(?([A-J])\)?(?![A-Za-z])"),
)
_LONE_LETTER = re.compile(r"\s*\**\s*\(?([A-Ja-j])\)?[.):]?\s*\**\s*")
_LEADING_LETTER = re.compile(r"^\s*\**\s*\(?([A-J])(?:[\).:\]]|\s*$|\s+-)")
_PAREN_LETTER = re.compile(r"\(([A-J])\)")
_NUMBER_TEXT = r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+"
_NUMBER = re.compile(_NUMBER_TEXT)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_MARKED = re.compile(rf"(?:####|answer is|answer:)\s*\$?\s*({_NUMBER_TEXT})", re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def is_choice_letter(text: str) -> bool:
    """Whether the text is nothing but an option letter: ``C``, ``(c)``, ``C.``."""
    return bool(re.fullmatch(r"\(?[A-Ja-j]\)?\.?", text.strip()))


def choice_letter(text: str | None) -> str | None:
    """The letter an answer picks: "the answer is (C)", \\boxed{C}, a lone "c", "C." at the start, or the
    only "(C)" it names; None when it picks none."""
    if not text:
        return None
    for pattern in _STRONG_LETTER:
        found = pattern.findall(text)
        if found:
            return str(found[-1]).upper()
    lone = _LONE_LETTER.fullmatch(text)
    if lone:
        return lone.group(1).upper()
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


def final_number(text: str | None) -> float | None:
    """An answer's number: the last \\boxed{...} that holds one, else the last number after ``####`` /
    ``answer is`` / ``answer:``, else the last number in the text; None when it has none."""
    if not text:
        return None
    for boxed in reversed(_BOXED.findall(text)):
        value = parse_number(boxed)
        if value is not None:
            return value
    for raw in reversed(_MARKED.findall(text) or _NUMBER.findall(text)):
        value = parse_number(raw)
        if value is not None:
            return value
    return None


def fold_text(answer: str | None) -> str:
    """Text folded for an exact comparison of short answers: NFKC, lower case, single spaces, no end
    punctuation ("Paris!" and "paris" fold alike); empty for a missing answer."""
    if not answer:
        return ""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", answer).lower())
    return text.strip(" .!?;:\"'`")


def squad_text(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces (for finding a
    reference answer inside a longer one)."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_key(text: str | None) -> str | None:
    """What an answer says if it picks a letter or gives a number: ``choice:C``, else ``number:1596``."""
    letter = choice_letter(text)
    if letter is not None:
        return f"choice:{letter}"
    number = final_number(text)
    if number is None:
        return None
    if number.is_integer() and abs(number) < 1e15:
        return f"number:{int(number)}"  # whole numbers exactly: 1234567 is not 1234568
    return f"number:{number:.6g}"


def vote_key(text: str) -> str:
    """What answers are compared on when voting: the choice letter, else the final number, else the text."""
    return answer_key(text) or f"text:{squad_text(text)}"


def answers_agree(first: str | None, second: str | None) -> bool | None:
    """Whether two answers agree without an embedder. A missing or blank answer never agrees; two answers
    that each pick a letter or give a number agree when `answer_key` reads them alike (as a vote would);
    otherwise short answers agree when they fold alike (`fold_text`). None for longer free text that
    neither rule settles."""
    a, b = fold_text(first), fold_text(second)
    if not a or not b:
        return False
    key_a, key_b = answer_key(first), answer_key(second)
    if key_a is not None and key_b is not None:
        return key_a == key_b
    if len(a) <= SHORT_ANSWER and len(b) <= SHORT_ANSWER:
        return a == b
    return None


def word_overlap(first: str | None, second: str | None) -> float:
    """F1 of the two answers' SQuAD-normalised words (`squad_text`): 0 when either has none."""
    a, b = squad_text(first or "").split(), squad_text(second or "").split()
    if not a or not b:
        return 0.0
    common = sum(min(a.count(w), b.count(w)) for w in set(a))
    return 0.0 if common == 0 else 2.0 * common / (len(a) + len(b))


def agreement(first: str | None, second: str | None) -> float:
    """Two answers' agreement as a number: +1 where `answers_agree` says they agree, -1 where it says they
    differ, and for long free text it cannot settle, the word overlap (`word_overlap`) mapped to [-1, 1]."""
    agree = answers_agree(first, second)
    if agree is not None:
        return 1.0 if agree else -1.0
    return 2.0 * word_overlap(first, second) - 1.0
