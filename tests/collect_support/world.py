"""A small persona for the collect tests: sums and capitals, and how each fake model answers them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from collect_support.pool_server import first_user

CAPITALS = (
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Norway", "Oslo"),
    ("Egypt", "Cairo"),
    ("Chile", "Santiago"),
    ("Canada", "Ottawa"),
    ("Spain", "Madrid"),
    ("Italy", "Rome"),
    ("Ghana", "Accra"),
    ("Cuba", "Havana"),
    ("Nepal", "Kathmandu"),
    ("Iran", "Tehran"),
    ("Mali", "Bamako"),
    ("Chad", "N'Djamena"),
    ("Fiji", "Suva"),
    ("Oman", "Muscat"),
    ("Laos", "Vientiane"),
    ("Togo", "Lome"),
    ("Iraq", "Baghdad"),
    ("Qatar", "Doha"),
    ("Benin", "Porto-Novo"),
    ("Niger", "Niamey"),
)
DISTRACTORS = ("Lyon", "Osaka", "Mombasa", "Cusco", "Bergen", "Giza")
MODELS = {"small": (0.1, 0.2), "large": (3.0, 15.0), "judge": (1.0, 2.0)}
ANSWERERS = ("small", "large")


def questions(n_each: int = 24) -> list[dict[str, Any]]:
    """``n_each`` (at most 24) arithmetic and multiple-choice geography questions each, with references."""
    assert n_each <= len(CAPITALS), "geography questions would repeat"
    out: list[dict[str, Any]] = []
    for i in range(n_each):
        a, b = 3 + i * 7, 11 + i * 5
        out.append(
            {
                "id": f"add-{i}",
                "question": f"What is {a} plus {b}?",
                "reference": str(a + b),
                "task": "arithmetic",
            }
        )
        country, capital = CAPITALS[i % len(CAPITALS)]
        options = [DISTRACTORS[(i + k) % len(DISTRACTORS)] for k in range(3)]
        right = i % 4
        options.insert(right, capital)
        listed = " ".join(f"({'ABCD'[k]}) {o}" for k, o in enumerate(options))
        out.append(
            {
                "id": f"geo-{i}",
                "question": f"Which city is the capital of {country}? {listed}",
                "reference": "ABCD"[right],
                "task": "geography",
            }
        )
    return out


def write_questions(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


REFERENCES = {q["question"]: q for q in questions(len(CAPITALS))}


def truth(model: str, question_id: str) -> float:
    """Whether ``answer`` below makes ``model`` right on a question (what the reference judge must find)."""
    kind, index = question_id.split("-")
    i = int(index)
    if model == "small":
        return 1.0 if kind == "add" or i % 4 == 0 else 0.0
    return 0.0 if kind == "add" and i % 6 == 5 else 1.0


def answer(model: str, messages: list[dict[str, Any]]) -> str:
    """small: right on arithmetic, always (A) on geography; large: right except every sixth sum."""
    text = first_user(messages)
    if model == "judge":
        return judge_answer(text)
    row = REFERENCES.get(text)
    if row is None:
        return "I am not sure."
    i = int(row["id"].split("-")[1])
    if row["task"] == "arithmetic":
        value = int(row["reference"]) + (1 if model == "large" and i % 6 == 5 else 0)
        return f"Adding them gives {value}. The answer is {value}."
    letter = "A" if model == "small" else row["reference"]
    return f"The capital is option ({letter}). The answer is ({letter})."


def judge_answer(prompt: str) -> str:
    """A fair judge: correct when the reference letter or number is what the graded answer concludes."""
    reference = re.search(r"Reference answer:\n(.*?)\n\n", prompt, re.DOTALL)
    graded = re.search(r"Answer to grade:\n(.*?)\n\n", prompt, re.DOTALL)
    if reference is None or graded is None:
        return '{"winner": "tie", "reason": "no reference"}'
    correct = _concludes(graded.group(1), reference.group(1).strip())
    return json.dumps({"correct": correct, "reason": "compared with the reference"})


def _concludes(text: str, reference: str) -> bool:
    final = text.rsplit("answer is", 1)[-1]
    return re.search(rf"(?<![\w]){re.escape(reference)}(?![\w])", final) is not None


def pairwise_judge(model: str, messages: list[dict[str, Any]]) -> str:
    """A fair pairwise judge: prefers the answer that reaches the reference, in either position."""
    prompt = first_user(messages)
    found = re.search(
        r"Reference answer:\n(.*?)\n\nAnswer A:\n(.*?)\n\nAnswer B:\n(.*?)\n\n", prompt, re.DOTALL
    )
    if model != "judge" or found is None:
        return answer(model, messages)
    reference, first, second = (g.strip() for g in found.groups())
    a, b = _concludes(first, reference), _concludes(second, reference)
    return json.dumps({"winner": "A" if a and not b else "B" if b and not a else "tie"})


def first_position_judge(model: str, messages: list[dict[str, Any]]) -> str:
    """A judge with position bias: always prefers answer A (so the two orders never agree on a winner)."""
    return json.dumps({"winner": "A"}) if model == "judge" else answer(model, messages)
