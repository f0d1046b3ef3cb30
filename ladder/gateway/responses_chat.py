"""The Responses API translated to the upstreams' chat completions, and their answers back to responses."""

from __future__ import annotations

import json
from typing import Any

from ladder.core.upstream_replies import Completion
from ladder.gateway.errors import InvalidRequestError
from ladder.gateway.responses_protocol import (
    CustomToolCallOutputParam,
    CustomToolParam,
    EasyInputMessageParam,
    FunctionCallOutputParam,
    FunctionToolParam,
    IncompleteDetails,
    Response,
    ResponseCreateParams,
    ResponseCustomToolCall,
    ResponseCustomToolCallParam,
    ResponseFunctionToolCall,
    ResponseFunctionToolCallParam,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)

TEXT_PARTS = ("input_text", "output_text", "text", "refusal")
CUSTOM_TOOL_SCHEMA = {  # a free-form tool, offered to a chat model as a function of one string
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as plain text."}},
    "required": ["input"],
}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _part(part: dict[str, Any], where: str) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind in TEXT_PARTS:
        text = part.get("text", part.get("refusal"))
        return {"type": "text", "text": text} if isinstance(text, str) else None
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise InvalidRequestError("input_image parts need an 'image_url' (a URL or a data: URL)", where)
        return {"type": "image_url", "image_url": {"url": url, "detail": part.get("detail") or "auto"}}
    raise InvalidRequestError(f"content parts of type '{kind}' are not supported; send text or images", where)


def _text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if p.get("type") in TEXT_PARTS and p.get("text"))


def _output_text(output: str | list[dict[str, Any]]) -> str:
    return output if isinstance(output, str) else _text(output)


def _message(item: EasyInputMessageParam, where: str) -> dict[str, Any]:
    if item.role == "assistant" or isinstance(item.content, str):
        return {"role": item.role, "content": _text(item.content)}
    parts = [p for p in (_part(part, f"{where}.content.{i}") for i, part in enumerate(item.content)) if p]
    return {"role": item.role, "content": parts}


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _messages(params: ResponseCreateParams) -> list[dict[str, Any]]:
    """Chat messages for ``instructions`` and ``input``: system and developer turns folded into one system
    message first; consecutive tool calls into one assistant message; reasoning and other items dropped."""
    systems = [params.instructions] if params.instructions else []
    messages: list[dict[str, Any]] = []
    items = (
        [EasyInputMessageParam(role="user", content=params.input)] if isinstance(params.input, str) else (params.input)
    )
    for i, item in enumerate(items):
        where = f"input.{i}"
        if isinstance(item, EasyInputMessageParam):
            if item.role in ("system", "developer"):
                systems.append(_text(item.content))
            else:
                messages.append(_message(item, where))
            continue
        if isinstance(item, ResponseFunctionToolCallParam | ResponseCustomToolCallParam):
            if isinstance(item, ResponseFunctionToolCallParam):
                call = _call(item.call_id, item.name, item.arguments)
            else:
                call = _call(item.call_id, item.name, json.dumps({"input": item.input}))
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputParam | CustomToolCallOutputParam):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": _output_text(item.output)})
    system = "\n\n".join(s for s in systems if s)
    return ([{"role": "system", "content": system}] if system else []) + messages


def _tools(params: ResponseCreateParams) -> list[dict[str, Any]]:
    tools = []
    for tool in params.tools or ():
        if isinstance(tool, FunctionToolParam):
            function: dict[str, Any] = {
                "name": tool.name,
                "description": tool.description or "",
                "parameters": tool.parameters or {"type": "object", "properties": {}},
            }
            if tool.strict is not None:
                function["strict"] = tool.strict
        elif isinstance(tool, CustomToolParam):
            function = {"name": tool.name, "description": tool.description or "", "parameters": CUSTOM_TOOL_SCHEMA}
        else:
            continue  # a hosted tool: no chat upstream runs it
        tools.append({"type": "function", "function": function})
    return tools


def custom_tool_names(params: ResponseCreateParams) -> frozenset[str]:
    return frozenset(t.name for t in params.tools or () if isinstance(t, CustomToolParam))


def _tool_choice(choice: str | dict[str, Any] | None, offered: set[str]) -> str | dict[str, Any] | None:
    if isinstance(choice, str):
        return choice if choice in ("auto", "none", "required") else None
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and choice.get("name") in offered:
        return {"type": "function", "function": {"name": choice["name"]}}
    return None  # a hosted tool or an allowed_tools list: left to the model


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    spec = (text or {}).get("format")
    if not isinstance(spec, dict) or spec.get("type") == "text":
        return None
    if spec.get("type") == "json_object":
        return {"type": "json_object"}
    if spec.get("type") == "json_schema":
        schema = {k: spec[k] for k in ("name", "schema", "strict", "description") if k in spec}
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequestError(f"text.format of type '{spec.get('type')}' is not supported", "text.format")


def to_chat_body(params: ResponseCreateParams) -> dict[str, Any]:
    """An OpenAI chat-completions body for a Responses API request."""
    if params.previous_response_id:
        raise InvalidRequestError(
            "Ladder keeps no responses, so previous_response_id cannot be resolved: send the whole "
            "conversation in 'input' (clients do so with store=false)",
            "previous_response_id",
        )
    body: dict[str, Any] = {"model": params.model, "messages": _messages(params)}
    if params.max_output_tokens is not None:
        body["max_tokens"] = params.max_output_tokens
    for key in ("temperature", "top_p", "user"):
        if getattr(params, key) is not None:
            body[key] = getattr(params, key)
    if params.stream:
        body["stream"] = True
    tools = _tools(params)
    if tools:
        body["tools"] = tools
        choice = _tool_choice(params.tool_choice, {t["function"]["name"] for t in tools})
        if choice is not None:
            body["tool_choice"] = choice
        if params.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = params.parallel_tool_calls
    response_format = _response_format(params.text)
    if response_format is not None:
        body["response_format"] = response_format
    return body


def tool_call_item(
    item_id: str, call_id: str, name: str, arguments: str, custom: frozenset[str]
) -> ResponseFunctionToolCall | ResponseCustomToolCall:
    """A chat tool call as a Responses output item (a custom tool's one string unwrapped)."""
    if name in custom:
        try:
            value = json.loads(arguments or "{}")
        except ValueError:
            value = None
        text = value.get("input") if isinstance(value, dict) else None
        return ResponseCustomToolCall(
            id=item_id, call_id=call_id, name=name, input=text if isinstance(text, str) else arguments
        )
    return ResponseFunctionToolCall(id=item_id, call_id=call_id, name=name, arguments=arguments or "{}")


def echo(params: ResponseCreateParams, response_id: str, model: str) -> Response:
    """An empty response carrying the request's settings, as OpenAI echoes them."""
    return Response(
        id=response_id,
        model=model,
        instructions=params.instructions,
        metadata=params.metadata or {},
        parallel_tool_calls=params.parallel_tool_calls if params.parallel_tool_calls is not None else True,
        temperature=params.temperature,
        top_p=params.top_p,
        max_output_tokens=params.max_output_tokens,
        tool_choice=params.tool_choice or "auto",
        tools=[t.model_dump(exclude_none=True) for t in params.tools or ()],
        text=params.text or {"format": {"type": "text"}},
    )


def to_response(completion: Completion, params: ResponseCreateParams, response_id: str, model: str) -> Response:
    """A ``response`` for an upstream's plain chat completion (its first choice)."""
    output: list[ResponseOutputItem] = []
    if completion.text:
        text = ResponseOutputText(text=completion.text)
        output.append(ResponseOutputMessage(id=f"msg_{response_id}", content=[text]))
    custom = custom_tool_names(params)
    for n, call in enumerate(completion.tool_calls):
        item_id, call_id = f"fc_{response_id}_{n}", call.id or f"call_{n}"
        output.append(tool_call_item(item_id, call_id, call.name or "", call.arguments or "", custom))
    response = echo(params, response_id, model)
    response.output = output
    reason = INCOMPLETE.get(str(completion.finish_reason))
    if reason is not None:
        response.status = "incomplete"
        response.incomplete_details = IncompleteDetails(reason=reason)  # type: ignore[arg-type]
    usage = completion.usage
    response.usage = ResponseUsage.of(
        usage.prompt_tokens if usage is not None else 0, usage.completion_tokens if usage is not None else 0
    )
    return response