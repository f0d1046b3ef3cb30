"""The questions file: plain text (one question a line) or JSONL with ids, messages, references and tests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.core.errors import DataError, PromptError
from ladder.core.prompt import routed_text
from ladder.training._canonical import open_text

KNOWN_KEYS = frozenset({"id", "question", "messages", "reference", "task", "tests", "sensitive"})


@dataclass(frozen=True)
class Question:
    """One question for every model: its chat messages, the text it is routed on, and how to judge it."""

    id: str
    text: str
    messages: tuple[dict[str, Any], ...]
    reference: str | None = None
    task: str | None = None
    tests: str | None = None
    sensitive: bool = False  # marked in the file: on-prem models only, whatever the patterns say
    where: str = field(default="", compare=False)

    def to_json(self) -> str:
        record: dict[str, Any] = {
            "id": self.id,
            "messages": list(self.messages),
            "reference": self.reference,
            "task": self.task,
            "tests": self.tests,
        }
        if self.sensitive:  # only when set: the bodies of questions stored before it existed stay the same
            record["sensitive"] = True
        return json.dumps(record, ensure_ascii=False, sort_keys=True)


def _text_id(text: str) -> str:
    """A stable id for a question given as plain text: the first 16 hex digits of its sha256."""
    return "q-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _optional_text(record: dict[str, Any], key: str, where: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and key == "tests" and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: {key} must be a string, not {type(value).__name__}")
    return value


def _messages(record: dict[str, Any], where: str) -> tuple[tuple[dict[str, Any], ...], str]:
    question, messages = record.get("question"), record.get("messages")
    if (question is None) == (messages is None):
        raise DataError(f"{where}: give exactly one of 'question' or 'messages'")
    if question is not None:
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{where}: question must be a non-empty string")
        return ({"role": "user", "content": question},), question
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: messages must be a non-empty list of chat messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise DataError(
                f"{where}: messages[{index}] must be an object with role system, user or assistant"
            )
    try:
        text = routed_text(messages)
    except PromptError as exc:
        raise DataError(f"{where}: {exc}") from None
    return tuple(messages), text


def _from_json(record: Any, where: str, line_id: str) -> Question:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - KNOWN_KEYS)
    if unknown:
        raise DataError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_KEYS))}"
        )
    messages, text = _messages(record, where)
    raw_id = record.get("id", line_id)
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool) or not str(raw_id).strip():
        raise DataError(f"{where}: id must be a non-empty string or integer")
    sensitive = record.get("sensitive", False)
    if not isinstance(sensitive, bool):
        raise DataError(f"{where}: sensitive must be true or false, not {type(sensitive).__name__}")
    return Question(
        id=str(raw_id).strip(),
        text=text,
        messages=messages,
        reference=_optional_text(record, "reference", where),
        task=_optional_text(record, "task", where),
        tests=_optional_text(record, "tests", where),
        sensitive=sensitive,
        where=where,
    )


def read_questions(path: Path | str) -> list[Question]:
    """Read a questions file; JSONL when its name ends in .jsonl (or .jsonl.gz), plain text otherwise.

    Errors name the file and line: a line that is not JSON, an unknown key, a duplicate id, an empty file.
    """
    path = Path(path)
    jsonl = path.name.removesuffix(".gz").endswith(".jsonl")
    questions: list[Question] = []
    seen: dict[str, str] = {}
    with open_text(path) as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                if jsonl:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(
                            f"{where}: not valid JSON ({exc.msg} at column {exc.colno})"
                        ) from None
                    question = _from_json(record, where, f"line-{number}")
                else:
                    text = line.strip()
                    question = Question(
                        _text_id(text), text, ({"role": "user", "content": text},), where=where
                    )
                if question.id in seen:
                    raise DataError(f"{where}: duplicate id {question.id!r} (first on {seen[question.id]})")
                seen[question.id] = where
                questions.append(question)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid UTF-8 text ({exc.reason})") from None
    if not questions:
        raise DataError(f"{path}: no questions in the file (expected one a line, or JSONL objects)")
    return questions
