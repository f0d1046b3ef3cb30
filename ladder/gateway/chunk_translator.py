"""The walk the Anthropic and Responses stream translators share over each chat chunk: usage, text, tool
calls, finish; each translator says what a piece becomes."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ladder.core.upstream_replies import Chunk, ToolCall


class ChunkTranslator(ABC):
    """Feed chat chunks, get another API's events (as SSE bytes); the last usage reported is kept."""

    input_tokens = 0
    output_tokens = 0

    def feed(self, chunk: Chunk) -> bytes:
        out = b""
        if chunk.usage is not None:
            self.input_tokens, self.output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.text:
                out += self.text(choice.text)
            for call in choice.tool_calls:
                out += self.tool_call(f"tool:{call.index or 0}", call)
            if choice.finish_reason:
                self.finished(choice.finish_reason)
        return out

    @abstractmethod
    def text(self, text: str) -> bytes:
        """Events for a piece of the answer's text."""

    @abstractmethod
    def tool_call(self, key: str, call: ToolCall) -> bytes:
        """Events for a piece of a tool call (``key``: ``tool:<index>``, the same for every piece of one call)."""

    @abstractmethod
    def finished(self, reason: str) -> None:
        """Note the upstream's finish reason."""
