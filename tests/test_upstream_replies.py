"""Upstream replies become typed views at the boundary, and nobody past it walks ``choices`` by hand."""

from __future__ import annotations

import ast
import json
import math
from typing import Any

import pytest

from ladder.core.errors import UpstreamError
from ladder.core.logprobs import TokenLogprob
from ladder.core.pricing import Usage
from ladder.core.upstream_replies import chunk, completion
from tests.support import REPO

REPLIES_MODULE = REPO / "ladder" / "core" / "upstream_replies.py"


def _walks_choices(node: ast.AST) -> bool:
    """``x["choices"]`` or ``x.get("choices")`` (either is an ``ast.expr``, which has a line number)."""
    if isinstance(node, ast.Subscript):
        key = node.slice
        return isinstance(key, ast.Constant) and key.value == "choices"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        first = node.args[0] if node.args else None
        return isinstance(first, ast.Constant) and first.value == "choices"
    return False


def test_only_the_replies_module_reads_choices() -> None:
    walks = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in sorted((REPO / "ladder").rglob("*.py"))
        if path != REPLIES_MODULE
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.expr) and _walks_choices(node)
    ]
    assert walks == [], "read the typed views of ladder.core.upstream_replies instead:\n" + "\n".join(walks)


def test_the_check_finds_a_hand_walk() -> None:
    tree = ast.parse('a = reply["choices"][0]\nb = reply.get("choices") or []\nc = reply.get("usage")')
    assert sum(_walks_choices(n) for n in ast.walk(tree)) == 2


def _completion(**fields: Any) -> bytes:
    message = {"role": "assistant", "content": "Paris"}
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop", **fields.pop("choice", {})}
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": "m", "choices": [choice], **fields}
    return json.dumps(body).encode()


def test_a_completion_reads_text_usage_finish_and_keeps_the_raw_object() -> None:
    raw = _completion(usage={"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9})
    reply = completion(raw, "m")
    assert (reply.text, reply.finish_reason, reply.model, reply.id) == ("Paris", "stop", "m", "chatcmpl-1")
    assert reply.usage == Usage(7, 2)
    assert reply.finish_reasons == ("stop",)
    assert reply.logprobs is None and reply.tool_calls == ()
    assert json.dumps(reply.raw).encode() == raw  # forwarded byte for byte


@pytest.mark.parametrize(
    "usage",
    [None, {}, {"prompt_tokens": 7}, {"prompt_tokens": None, "completion_tokens": 2}],
)
def test_a_missing_or_partial_usage_is_no_usage(usage: dict[str, Any] | None) -> None:
    fields = {} if usage is None else {"usage": usage}
    assert completion(_completion(**fields), "m").usage is None


def test_logprobs_are_typed_with_minus_infinity_kept_and_junk_skipped() -> None:
    content = [
        {"token": "Par", "logprob": -0.25},
        {"token": "is", "logprob": float("-inf")},
        {"token": "?", "logprob": None},
        {"token": "!", "logprob": True},
        "junk",
    ]
    raw = json.dumps({"choices": [{"message": {"content": "Paris"}, "logprobs": {"content": content}}]})
    assert "-Infinity" in raw  # what Python's json (and llama.cpp) write for -inf
    reply = completion(raw.encode(), "m")
    assert reply.logprobs is not None
    assert reply.logprobs[0] == TokenLogprob("Par", -0.25)
    assert reply.logprobs[1].token == "is" and math.isinf(reply.logprobs[1].logprob)
    assert len(reply.logprobs) == 2


def test_tool_calls_are_typed_and_keep_their_raw_objects() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    message = {"content": None, "tool_calls": [call]}
    reply = completion(json.dumps({"choices": [{"message": message, "finish_reason": "tool_calls"}]}).encode(), "m")
    assert reply.text is None
    (typed,) = reply.tool_calls
    assert (typed.id, typed.name, typed.arguments, typed.index) == ("call_1", "f", '{"x": 1}', None)
    assert typed.raw == call


def test_without_logprobs_drops_them_from_every_choice_and_nothing_else() -> None:
    raw = _completion(choice={"logprobs": {"content": []}}, usage={"prompt_tokens": 1, "completion_tokens": 1})
    reply = completion(raw, "m")
    stripped = reply.without_logprobs()
    assert "logprobs" not in stripped["choices"][0]
    assert "logprobs" in reply.raw["choices"][0]  # the view is left as it came
    assert list(stripped) == list(reply.raw) and stripped["usage"] == reply.raw["usage"]


@pytest.mark.parametrize(
    "body",
    [b"[]", b"not json", b'{"choices": []}', b'{"choices": [{"finish_reason": "stop"}]}'],
)
def test_a_malformed_completion_is_an_upstream_error(body: bytes) -> None:
    with pytest.raises(UpstreamError):
        completion(body, "m")


def test_a_chunk_reads_deltas_tool_call_pieces_logprobs_and_finish() -> None:
    delta = {
        "content": "Pa",
        "tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "g", "arguments": '{"y"'}}],
    }
    logprobs = {"content": [{"token": "Pa", "logprob": -0.5}]}
    event = {"choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": "length"}]}
    piece = chunk(json.dumps(event), "m")
    (choice,) = piece.choices
    assert choice.text == "Pa" and choice.finish_reason == "length"
    assert choice.logprobs == (TokenLogprob("Pa", -0.5),)
    (call,) = choice.tool_calls
    assert (call.index, call.id, call.name, call.arguments) == (1, "call_2", "g", '{"y"')
    assert piece.texts == ["Pa", '{"y"'] and piece.finish_reasons == ("length",)
    assert piece.usage is None and piece.raw == event


def test_a_usage_chunk_has_no_choices() -> None:
    event = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    piece = chunk(json.dumps(event), "m")
    assert piece.choices == () and piece.usage == Usage(3, 4) and piece.texts == []


def test_an_error_event_or_a_malformed_chunk_raises() -> None:
    with pytest.raises(UpstreamError, match="failed mid-stream: overloaded"):
        chunk(json.dumps({"error": {"message": "overloaded"}}), "m")
    with pytest.raises(UpstreamError, match="malformed chunk"):
        chunk(json.dumps({"choices": [{"delta": {"content": 5}}]}), "m")
