"""What text a request is routed on: the system prompt plus the latest user turns.

The encoder sees ``system`` then the last ``user_turns`` user messages, joined by blank lines. When that is
longer than the token budget the *end* is kept (see ``ladder.core.encoder``): few-shot examples and pasted context
come first in a prompt, the question usually comes last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ladder.core.errors import PromptError

MAX_PROMPT_CHARS = 2_000_000
DEFAULT_USER_TURNS = 3


def check_string(text: object, name: str) -> str:
    """``text``, a string that encodes as UTF-8; a PromptError about ``name`` when it is not."""
    if not isinstance(text, str):
        raise PromptError(f"{name} must be a string, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PromptError(f"{name} is not valid UTF-8 (bad character at position {exc.start})") from exc
    return text


def check_text(text: str, what: str = "prompt") -> str:
    """Refuse text that cannot be routed: not a string, invalid UTF-8, empty, or absurdly large."""
    check_string(text, f"the {what}")
    if not text.strip():
        raise PromptError(f"the {what} is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(f"the {what} has {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}")
    return text


def content_text(content: Any) -> str:
    """The text of an OpenAI/Anthropic message content: a string or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") in ("text", "input_text"):
                texts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                texts.append(part)
        return "\n".join(t for t in texts if t)
    raise PromptError(f"message content must be a string or a list of parts, not {type(content).__name__}")


def routed_text(
    messages: Iterable[Mapping[str, Any]], system: str | None = None, user_turns: int = DEFAULT_USER_TURNS
) -> str:
    """Build the text to route on from chat messages (OpenAI or Anthropic shape)."""
    systems = [system] if system else []
    users: list[str] = []
    for message in messages:
        role = message.get("role")
        text = content_text(message.get("content"))
        if role in ("system", "developer"):
            systems.append(text)
        elif role == "user" and text.strip():
            users.append(text)
    parts = [s for s in systems if s.strip()] + users[-user_turns:]
    if not users:
        raise PromptError("the request has no user message with text to route on")
    return check_text("\n\n".join(parts))
