"""The OpenAI Responses API's request and response models (named like ``openai.types.responses``)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag

from ladder.gateway.protocol import MergesExtraBody, Passthrough, RoutingExtensions, type_tag

# Input items Ladder translates; any other ``type`` (reasoning, web_search_call, ...) is checked and dropped.
TRANSLATED_ITEMS = ("message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output")


class EasyInputMessageParam(Passthrough):
    """A message item: ``content`` a string or a list of parts (``input_text``, ``output_text``,
    ``input_image``, ``input_file``, ``refusal``)."""

    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[dict[str, Any]]


class ResponseFunctionToolCallParam(Passthrough):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputParam(Passthrough):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[dict[str, Any]]


class ResponseCustomToolCallParam(Passthrough):
    """A call of a free-form (``custom``) tool: its ``input`` is plain text, not JSON."""

    type: Literal["custom_tool_call"]
    call_id: str
    name: str
    input: str


class CustomToolCallOutputParam(Passthrough):
    type: Literal["custom_tool_call_output"]
    call_id: str
    output: str | list[dict[str, Any]]


class OtherItemParam(Passthrough):
    """An item no chat model can take (reasoning, server-side tool calls): checked for a type, dropped."""

    type: str


def _item_tag(value: Any) -> str | None:
    """An item's union branch: its ``type``; a message may leave ``type`` out."""
    if not isinstance(value, dict):
        return getattr(value, "type", None) or ("message" if hasattr(value, "role") else None)
    kind = value.get("type")
    if kind is None:
        return "message" if "role" in value else None
    return kind if kind in TRANSLATED_ITEMS else "other"


ResponseInputItemParam = Annotated[
    Annotated[EasyInputMessageParam, Tag("message")]
    | Annotated[ResponseFunctionToolCallParam, Tag("function_call")]
    | Annotated[FunctionCallOutputParam, Tag("function_call_output")]
    | Annotated[ResponseCustomToolCallParam, Tag("custom_tool_call")]
    | Annotated[CustomToolCallOutputParam, Tag("custom_tool_call_output")]
    | Annotated[OtherItemParam, Tag("other")],
    Discriminator(_item_tag),
]


class FunctionToolParam(Passthrough):
    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomToolParam(Passthrough):
    """A free-form tool: offered to a chat model as a function taking one string, ``input``."""

    type: Literal["custom"]
    name: str = Field(min_length=1)
    description: str | None = None


class OtherToolParam(Passthrough):
    """A hosted tool (web_search, file_search, local_shell, ...): no chat upstream runs it, so it is dropped."""

    type: str


def _tool_tag(value: Any) -> str | None:
    return type_tag(value, ("function", "custom"))


ToolParam = Annotated[
    Annotated[FunctionToolParam, Tag("function")]
    | Annotated[CustomToolParam, Tag("custom")]
    | Annotated[OtherToolParam, Tag("other")],
    Discriminator(_tool_tag),
]


class ResponseCreateParams(MergesExtraBody):
    """A Responses API request. Fields a chat upstream cannot use (``reasoning``, ``store``, ``include``,
    ``truncation``, ``prompt_cache_key``, ``service_tier``, hosted tools, reasoning items) are accepted and
    not forwarded; ``previous_response_id`` is refused, as Ladder keeps no responses."""

    model: str = Field(min_length=1)
    input: str | list[ResponseInputItemParam]
    instructions: str | None = None
    stream: bool | None = None
    tools: list[ToolParam] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    text: dict[str, Any] | None = None
    previous_response_id: str | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    tolerance: float | None = Field(default=None, ge=0, le=1)
    models: list[str] | None = Field(default=None, min_length=1)
    max_latency_ms: float | None = Field(default=None, gt=0)
    extra_body: RoutingExtensions | None = None


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class ResponseOutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class ResponseOutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: ItemStatus = "completed"
    content: list[ResponseOutputText]


class ToolCallItem(BaseModel):
    """An output item that calls one of the client's tools (each kind narrows ``type`` and adds its input)."""

    type: str
    id: str
    call_id: str
    name: str


class ResponseFunctionToolCall(ToolCallItem):
    type: Literal["function_call"] = "function_call"
    arguments: str
    status: ItemStatus = "completed"


class ResponseCustomToolCall(ToolCallItem):
    type: Literal["custom_tool_call"] = "custom_tool_call"
    input: str
    status: ItemStatus = "completed"


ResponseOutputItem = ResponseOutputMessage | ResponseFunctionToolCall | ResponseCustomToolCall


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)

    @classmethod
    def of(cls, input_tokens: int, output_tokens: int) -> ResponseUsage:
        return cls(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens)


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class Response(BaseModel):
    """A Responses API ``response`` object; ``ladder`` carries the routing decision and its cost."""

    id: str
    object: Literal["response"] = "response"
    created_at: float = Field(default_factory=time.time)
    status: Literal["in_progress", "completed", "incomplete", "failed"] = "completed"
    model: str
    output: list[ResponseOutputItem] = Field(default_factory=list)
    usage: ResponseUsage | None = None
    error: dict[str, Any] | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    previous_response_id: str | None = None
    store: bool = False
    ladder: dict[str, Any] | None = None
