"""The Anthropic Messages API, translated to and from the upstreams' OpenAI chat format."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from ladder.core.upstream_replies import Completion
from ladder.gateway.errors import InvalidRequestError
from ladder.gateway.protocol import Passthrough, RoutingExtensions, type_tag

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


class Base64Source(Passthrough):
    type: Literal["base64"]
    media_type: str = "image/png"
    data: str


class URLSource(Passthrough):
    type: Literal["url"]
    url: str


class PlainTextSource(Passthrough):
    type: Literal["text"]
    data: str


class ContentSource(Passthrough):
    type: Literal["content"]
    content: str | list[ContentBlockParam]


class FileSource(Passthrough):
    type: Literal["file"]
    file_id: str


ImageSource = Annotated[Base64Source | URLSource | FileSource, Field(discriminator="type")]
DocumentSource = Annotated[
    Base64Source | URLSource | PlainTextSource | ContentSource | FileSource, Field(discriminator="type")
]


class TextBlockParam(Passthrough):
    type: Literal["text"]
    text: str


class ImageBlockParam(Passthrough):
    type: Literal["image"]
    source: ImageSource


class DocumentBlockParam(Passthrough):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None
    context: str | None = None


class ToolUseBlockParam(Passthrough):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlockParam(Passthrough):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ContentBlockParam] | None = None
    is_error: bool | None = None


class OtherBlockParam(Passthrough):
    """A block Ladder does not translate (thinking, server tools, ...): checked for a type, not forwarded."""

    type: str


def _block_tag(value: Any) -> str | None:
    return type_tag(value, TRANSLATED_BLOCKS)


TRANSLATED_BLOCKS = ("text", "image", "document", "tool_use", "tool_result")
ContentBlockParam = Annotated[
    Annotated[TextBlockParam, Tag("text")]
    | Annotated[ImageBlockParam, Tag("image")]
    | Annotated[DocumentBlockParam, Tag("document")]
    | Annotated[ToolUseBlockParam, Tag("tool_use")]
    | Annotated[ToolResultBlockParam, Tag("tool_result")]
    | Annotated[OtherBlockParam, Tag("other")],
    Discriminator(_block_tag),
]


ContentSource.model_rebuild()
DocumentBlockParam.model_rebuild()
ToolResultBlockParam.model_rebuild()


class ToolParam(Passthrough):
    """A tool: a custom one (no ``type``, or ``custom``) becomes a function; a typed one Anthropic defines
    (``web_search_20250305``, ``bash_20250124``, ``text_editor_...``) has no chat equivalent and is dropped."""

    type: str | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None

    @property
    def is_custom(self) -> bool:
        return self.type in (None, "custom")


class ToolChoiceParam(Passthrough):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class MessageParam(Passthrough):
    """A turn; ``system`` turns (Claude Code sends them) are folded into the system prompt."""

    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlockParam]


class OutputConfig(Passthrough):
    """``output_config``: ``format`` (a JSON schema) is translated; ``effort`` has no chat equivalent."""

    format: dict[str, Any] | None = None


class MessageCreateParams(Passthrough):
    """A Messages API request. Fields a chat upstream cannot use (``thinking``, ``context_management``,
    ``output_config.effort``, ``cache_control``, ``service_tier``, ``container``, ``mcp_servers``, ``top_k``)
    are accepted and not forwarded."""

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[ContentBlockParam] | None = None
    stream: bool | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = None
    output_config: OutputConfig | None = None
    tolerance: float | None = Field(default=None, ge=0, le=1)
    models: list[str] | None = Field(default=None, min_length=1)
    extra_body: RoutingExtensions | None = None


def _text(blocks: str | list[Any] | None) -> str:
    """The text of a string or of a list of blocks (text blocks and text documents; others are skipped)."""
    if blocks is None or isinstance(blocks, str):
        return blocks or ""
    texts = []
    for block in blocks:
        if isinstance(block, dict):
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
        elif isinstance(block, TextBlockParam):
            texts.append(block.text)
        elif isinstance(block, DocumentBlockParam):
            texts.append(_document_text(block))
    return "\n".join(t for t in texts if t)


def _image(block: ImageBlockParam) -> dict[str, Any]:
    source = block.source
    if isinstance(source, Base64Source):
        url = f"data:{source.media_type};base64,{source.data}"
    elif isinstance(source, URLSource):
        url = source.url
    else:
        raise InvalidRequestError("image blocks need a 'base64' or 'url' source, not 'file'", "messages")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_text(block: DocumentBlockParam) -> str:
    source = block.source
    if isinstance(source, PlainTextSource):
        body = source.data
    elif isinstance(source, ContentSource):
        body = _text(source.content)
    else:
        raise InvalidRequestError(
            f"document blocks need a 'text' or 'content' source; '{source.type}' is not supported", "messages"
        )
    return "\n\n".join(t for t in (block.title, block.context, body) if t)


def _user_messages(content: list[Any]) -> list[dict[str, Any]]:
    tool_results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, TextBlockParam):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlockParam):
            parts.append(_image(block))
        elif isinstance(block, DocumentBlockParam):
            parts.append({"type": "text", "text": _document_text(block)})
        elif isinstance(block, ToolResultBlockParam):
            tool_results.append(
                {"role": "tool", "tool_call_id": block.tool_use_id, "content": _text(block.content)}
            )
    return tool_results + ([{"role": "user", "content": parts}] if parts else [])


def _assistant_message(content: list[Any]) -> dict[str, Any]:
    calls = [
        {
            "id": b.id,
            "type": "function",
            "function": {"name": b.name, "arguments": json.dumps(b.input)},
        }
        for b in content
        if isinstance(b, ToolUseBlockParam)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": _text(content) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_choice(choice: ToolChoiceParam) -> str | dict[str, Any]:
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequestError("tool_choice of type 'tool' needs a 'name'", "tool_choice.name")
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def _system_text(params: MessageCreateParams) -> str:
    """The top-level system prompt and every ``system`` turn, in order, as one text."""
    texts = [_text(params.system)] + [_text(m.content) for m in params.messages if m.role == "system"]
    return "\n\n".join(t for t in texts if t)


def _tools(params: MessageCreateParams) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description or "",
                "parameters": t.input_schema or {"type": "object"},
            },
        }
        for t in params.tools or ()
        if t.is_custom
    ]


def _response_format(output: OutputConfig | None) -> dict[str, Any] | None:
    spec = output.format if output is not None else None
    if not spec or spec.get("type") != "json_schema" or not isinstance(spec.get("schema"), dict):
        return None
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": spec["schema"], "strict": True}}


def to_chat_body(params: MessageCreateParams) -> dict[str, Any]:
    """An OpenAI chat-completions body for a Messages API request."""
    messages: list[dict[str, Any]] = []
    system = _system_text(params)
    if system:
        messages.append({"role": "system", "content": system})
    for m in params.messages:
        if m.role == "system":
            continue
        if isinstance(m.content, str):
            messages.append({"role": m.role, "content": m.content})
        elif m.role == "user":
            messages.extend(_user_messages(m.content))
        else:
            messages.append(_assistant_message(m.content))
    body: dict[str, Any] = {"model": params.model, "messages": messages, "max_tokens": params.max_tokens}
    for key in ("temperature", "top_p"):
        if getattr(params, key) is not None:
            body[key] = getattr(params, key)
    if params.stop_sequences:
        body["stop"] = params.stop_sequences
    if params.stream:
        body["stream"] = True
    tools = _tools(params)
    if tools:
        body["tools"] = tools
    offered = {t["function"]["name"] for t in tools}
    choice = params.tool_choice
    translated = _tool_choice(choice) if choice is not None else None  # a 'tool' choice without a name: 400
    if tools and choice is not None and (choice.type != "tool" or choice.name in offered):
        body["tool_choice"] = translated  # one naming a dropped tool (web_search) is left to the model
        if choice.disable_parallel_tool_use:
            body["parallel_tool_calls"] = False
    response_format = _response_format(params.output_config)
    if response_format is not None:
        body["response_format"] = response_format
    if params.metadata and params.metadata.get("user_id"):
        body["user"] = str(params.metadata["user_id"])
    return body


def to_message(completion: Completion, model: str) -> dict[str, Any]:
    """An Anthropic ``Message`` for an OpenAI chat completion (its first choice)."""
    content: list[dict[str, Any]] = []
    if completion.text:
        content.append({"type": "text", "text": completion.text})
    for call in completion.tool_calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):  # Anthropic's ``input`` is always an object
            arguments = {"_raw": call.arguments}
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    usage = completion.usage
    return {
        "id": f"msg_{completion.id or ''}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(str(completion.finish_reason), "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.prompt_tokens if usage is not None else 0,
            "output_tokens": usage.completion_tokens if usage is not None else 0,
        },
    }