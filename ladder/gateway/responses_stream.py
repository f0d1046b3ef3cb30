"""OpenAI chat-completion chunks to the Responses API's stream: created, output items, deltas, completed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ladder.core.upstream_replies import ToolCall
from ladder.gateway.chunk_translator import ChunkTranslator
from ladder.gateway.responses_chat import INCOMPLETE, tool_call_item
from ladder.gateway.responses_protocol import (
    IncompleteDetails,
    Response,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)
from ladder.gateway.sse import named_event


@dataclass
class _OpenItem:
    """The output item being streamed: a message's text, or one tool call's arguments."""

    key: str  # "text" or "tool:<openai index>"
    item_id: str
    text: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""


class ResponsesStream(ChunkTranslator):
    """A state machine: feed OpenAI chunks, get Responses API events (as SSE bytes)."""

    def __init__(self, response: Response, custom_tools: frozenset[str]) -> None:
        self.response = response  # the request's echo; output, usage and status are filled in as chunks come
        self.custom_tools = custom_tools
        self.sequence = 0
        self.item: _OpenItem | None = None
        self.finish_reason: str | None = None

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **payload}
        self.sequence += 1
        return named_event(kind, data)

    def _snapshot(self) -> dict[str, Any]:
        return self.response.model_dump(mode="json", exclude_none=False)

    def start(self) -> bytes:
        self.response.status = "in_progress"
        snapshot = self._snapshot()
        return self._event("response.created", {"response": snapshot}) + self._event(
            "response.in_progress", {"response": snapshot}
        )

    @property
    def _index(self) -> int:
        return len(self.response.output)

    def _open_text(self) -> bytes:
        self.item = _OpenItem("text", f"msg_{self.response.id}_{self._index}")
        item = {"type": "message", "id": self.item.item_id, "role": "assistant", "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": self.item.item_id, "output_index": self._index}
        return self._event("response.output_item.added", {"output_index": self._index, "item": item}) + (
            self._event("response.content_part.added", {**where, "content_index": 0, "part": part})
        )

    def _open_tool(self, key: str, call_id: str, name: str) -> bytes:
        self.item = _OpenItem(key, f"fc_{self.response.id}_{self._index}", call_id=call_id, name=name)
        kind = "custom_tool_call" if name in self.custom_tools else "function_call"
        item = {
            "type": kind,
            "id": self.item.item_id,
            "call_id": call_id,
            "name": name,
            "status": "in_progress",
            **({"input": ""} if kind == "custom_tool_call" else {"arguments": ""}),
        }
        return self._event("response.output_item.added", {"output_index": self._index, "item": item})

    def _close(self) -> bytes:
        open_item, self.item = self.item, None
        if open_item is None:
            return b""
        index = self._index
        where = {"item_id": open_item.item_id, "output_index": index}
        text = "".join(open_item.text)
        out = b""
        done: ResponseOutputItem
        if open_item.key == "text":
            part = ResponseOutputText(text=text)
            out += self._event("response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []})
            out += self._event(
                "response.content_part.done", {**where, "content_index": 0, "part": part.model_dump(mode="json")}
            )
            done = ResponseOutputMessage(id=open_item.item_id, content=[part])
        else:
            done = tool_call_item(open_item.item_id, open_item.call_id, open_item.name, text, self.custom_tools)
            if done.type == "function_call":
                out += self._event(
                    "response.function_call_arguments.done",
                    {**where, "name": open_item.name, "arguments": done.arguments},
                )
            else:
                out += self._event("response.custom_tool_call_input.done", {**where, "input": done.input})
        self.response.output.append(done)
        return out + self._event(
            "response.output_item.done", {"output_index": index, "item": done.model_dump(mode="json")}
        )

    def text(self, text: str) -> bytes:
        out = b""
        if self.item is None or self.item.key != "text":
            out += self._close() + self._open_text()
        assert self.item is not None
        self.item.text.append(text)
        where = {"item_id": self.item.item_id, "output_index": self._index}
        return out + self._event(
            "response.output_text.delta", {**where, "content_index": 0, "delta": text, "logprobs": []}
        )

    def tool_call(self, key: str, call: ToolCall) -> bytes:
        out = b""
        if self.item is None or self.item.key != key:
            out += self._close() + self._open_tool(key, call.id or f"call_{self._index}", call.name or "")
        assert self.item is not None
        if call.arguments:
            self.item.text.append(call.arguments)
            if self.item.name not in self.custom_tools:  # a custom tool's input is unwrapped at the end
                out += self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": self.item.item_id, "output_index": self._index, "delta": call.arguments},
                )
        return out

    def finished(self, reason: str) -> None:
        self.finish_reason = reason

    def finish(self, extra: dict[str, Any] | None = None) -> bytes:
        """Close the open item and send ``response.completed`` (or ``response.incomplete``)."""
        out = self._close()
        self.response.usage = ResponseUsage.of(self.input_tokens, self.output_tokens)
        self.response.ladder = extra
        reason = INCOMPLETE.get(str(self.finish_reason))
        if reason is not None:
            self.response.status = "incomplete"
            self.response.incomplete_details = IncompleteDetails(reason=reason)  # type: ignore[arg-type]
            return out + self._event("response.incomplete", {"response": self._snapshot()})
        self.response.status = "completed"
        return out + self._event("response.completed", {"response": self._snapshot()})

    def fail(self, code: str, message: str) -> bytes:
        """End the stream with ``response.failed`` carrying the error (never a silent truncation)."""
        out = self._close()
        self.response.status = "failed"
        self.response.error = {"code": code, "message": message}
        return out + self._event("response.failed", {"response": self._snapshot()})
