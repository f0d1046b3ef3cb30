"""Hypothesis strategies: multi-turn chat, Messages and Responses conversations with tools, and mutations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from gateway_support.tools import anthropic_tool, chat_tool

WORDS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=16
).filter(lambda s: s.strip() != "")
TOOL = chat_tool("lookup", "Look a record up", "q")
ANTHROPIC_TOOL = anthropic_tool("lookup", "Look a record up", "q")
STRUCTURAL = frozenset({"role", "type", "model", "media_type"})  # fields whose value is a name, not content

JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | WORDS
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WORDS, inner, max_size=4),
    max_leaves=5,
)


@st.composite
def chat_conversations(draw: st.DrawFn) -> dict[str, Any]:
    """An OpenAI chat body: an optional system prompt, turns with text parts, tool calls and results."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(WORDS)})
    for turn in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            messages.append({"role": "user", "content": draw(WORDS)})
        else:
            parts = [{"type": "text", "text": draw(WORDS)} for _ in range(draw(st.integers(1, 3)))]
            messages.append({"role": "user", "content": parts})
        kind = draw(st.sampled_from(["text", "tool", "none"]))
        if kind == "text":
            messages.append({"role": "assistant", "content": draw(WORDS)})
        elif kind == "tool":
            call_id = f"call_{turn}"
            arguments = json.dumps({"q": draw(WORDS)})
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": "lookup", "arguments": arguments},
                        }
                    ],
                }
            )
            messages.append({"role": "tool", "tool_call_id": call_id, "content": draw(WORDS)})
    messages.append({"role": "user", "content": draw(WORDS)})
    body: dict[str, Any] = {"model": "ladder-0", "messages": messages}
    if any(m.get("tool_calls") for m in messages) or draw(st.booleans()):
        body["tools"] = [TOOL]
    return body


@st.composite
def anthropic_conversations(draw: st.DrawFn) -> dict[str, Any]:
    """An Anthropic Messages body: system (string or blocks), tool_use/tool_result turns, text documents."""
    messages: list[dict[str, Any]] = []
    pending_tool: str | None = None
    for turn in range(draw(st.integers(1, 5))):
        blocks: list[dict[str, Any]] = []
        if pending_tool is not None:
            blocks.append({"type": "tool_result", "tool_use_id": pending_tool, "content": draw(WORDS)})
            pending_tool = None
        blocks.append({"type": "text", "text": draw(WORDS)})
        if draw(st.booleans()):
            source = draw(
                st.sampled_from(
                    [
                        {"type": "text", "media_type": "text/plain", "data": draw(WORDS)},
                        {"type": "content", "content": [{"type": "text", "text": draw(WORDS)}]},
                    ]
                )
            )
            blocks.append({"type": "document", "source": source, "title": draw(WORDS)})
        messages.append({"role": "user", "content": blocks})
        if draw(st.booleans()):
            pending_tool = f"toolu_{turn}"
            use = {"type": "tool_use", "id": pending_tool, "name": "lookup", "input": {"q": draw(WORDS)}}
            messages.append({"role": "assistant", "content": [{"type": "text", "text": draw(WORDS)}, use]})
        else:
            messages.append({"role": "assistant", "content": draw(WORDS)})
    final: list[dict[str, Any]] = []
    if pending_tool is not None:
        final.append({"type": "tool_result", "tool_use_id": pending_tool, "content": draw(WORDS)})
    final.append({"type": "text", "text": draw(WORDS)})
    messages.append({"role": "user", "content": final})
    body: dict[str, Any] = {
        "model": "ladder-0",
        "max_tokens": 32,
        "messages": messages,
        "tools": [ANTHROPIC_TOOL],
    }
    system = draw(st.sampled_from(["none", "string", "blocks"]))
    if system == "string":
        body["system"] = draw(WORDS)
    elif system == "blocks":
        body["system"] = [{"type": "text", "text": draw(WORDS)}]
    return body


@st.composite
def responses_conversations(draw: st.DrawFn) -> dict[str, Any]:
    """A Responses API body: instructions, message items (string or parts), function calls and outputs,
    reasoning items, function and hosted tools."""
    items: list[dict[str, Any]] = []
    if draw(st.booleans()):
        items.append({"type": "message", "role": "developer", "content": draw(WORDS)})
    for turn in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            items.append({"role": "user", "content": draw(WORDS)})
        else:
            items.append({"role": "user", "content": [{"type": "input_text", "text": draw(WORDS)}]})
        kind = draw(st.sampled_from(["text", "tool", "reasoning"]))
        if kind == "text":
            items.append({"role": "assistant", "content": [{"type": "output_text", "text": draw(WORDS)}]})
        elif kind == "tool":
            call_id = f"call_{turn}"
            arguments = json.dumps({"q": draw(WORDS)})
            items.append({"type": "function_call", "call_id": call_id, "name": "lookup", "arguments": arguments})
            items.append({"type": "function_call_output", "call_id": call_id, "output": draw(WORDS)})
        else:
            items.append({"type": "reasoning", "id": f"rs_{turn}", "summary": []})
    items.append({"role": "user", "content": draw(WORDS)})
    body: dict[str, Any] = {
        "model": "ladder-0",
        "input": items if draw(st.booleans()) else draw(WORDS),
        "max_output_tokens": 32,
        "tools": [{"type": "function", **TOOL["function"]}, {"type": "web_search"}],  # type: ignore[dict-item]
    }
    if draw(st.booleans()):
        body["instructions"] = draw(WORDS)
    return body


def nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every node of a JSON value with its path, parents before their children, in document order."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nodes(item, (*path, index))


def string_paths(value: Any) -> Iterator[tuple[Any, ...]]:
    """The path of every string leaf that holds content (not a role, type or model name)."""
    for path, node in nodes(value):
        if isinstance(node, str) and (not path or path[-1] not in STRUCTURAL):
            yield path


def all_paths(value: Any) -> Iterator[tuple[Any, ...]]:
    """The path of every node below the root."""
    return (path for path, _ in nodes(value) if path)


def with_value(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``body`` with the node at ``path`` replaced (deep-copied through JSON)."""
    copy = json.loads(json.dumps(body))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def without(body: Any, path: tuple[Any, ...]) -> Any:
    """A copy of ``body`` without the node at ``path``."""
    copy = json.loads(json.dumps(body))
    node = copy
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return copy


@st.composite
def mutated(draw: st.DrawFn, bodies: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid body with one to three random edits: a node replaced by any JSON value, deleted, or a key
    added with any value."""
    body = draw(bodies)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(all_paths(body))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add" or not paths:
            key = draw(
                st.sampled_from(["extra_body", "stream", "tools", "tool_choice", "system", "n"]) | WORDS
            )
            body = {**body, key: draw(JSON_VALUES)}
            continue
        path = draw(st.sampled_from(paths))
        body = without(body, path) if action == "delete" else with_value(body, path, draw(JSON_VALUES))
    return body
