"""OpenAI chat-completion chunks to Anthropic's stream: message_start, content blocks, message_delta, stop."""

from __future__ import annotations

from typing import Any

from ladder.core.upstream_replies import ToolCall
from ladder.gateway.anthropic_protocol import STOP_REASONS
from ladder.gateway.chunk_translator import ChunkTranslator
from ladder.gateway.sse import named_event


class AnthropicStream(ChunkTranslator):
    """A state machine: feed OpenAI chunks, get Anthropic events (as SSE bytes)."""

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self.index = -1
        self.block: str | None = None  # "text" or "tool:<openai index>"
        self.stop_reason = "end_turn"

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return named_event("message_start", {"type": "message_start", "message": message}) + named_event(
            "ping", {"type": "ping"}
        )

    def _open(self, key: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.index += 1
        self.block = key
        return out + named_event(
            "content_block_start",
            {"type": "content_block_start", "index": self.index, "content_block": block},
        )

    def _close(self) -> bytes:
        if self.block is None:
            return b""
        self.block = None
        return named_event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return named_event(
            "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}
        )

    def text(self, text: str) -> bytes:
        out = b"" if self.block == "text" else self._open("text", {"type": "text", "text": ""})
        return out + self._delta({"type": "text_delta", "text": text})

    def tool_call(self, key: str, call: ToolCall) -> bytes:
        out = b""
        if self.block != key:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.id or f"toolu_{self.index + 1}",
                "name": call.name or "",
                "input": {},
            }
            out += self._open(key, block)
        if call.arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": call.arguments})
        return out

    def finished(self, reason: str) -> None:
        self.stop_reason = STOP_REASONS.get(reason, "end_turn")

    def finish(self, extra: dict[str, Any] | None = None) -> bytes:
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        }
        if extra:
            delta["ladder"] = extra
        return (
            self._close()
            + named_event("message_delta", delta)
            + named_event("message_stop", {"type": "message_stop"})
        )
