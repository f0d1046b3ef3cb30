"""The OpenAI Responses API through the gateway with the official ``openai`` client: plain, streaming, tools."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from gateway_support.common import AUTH, RunningGateway
from gateway_support.recorded import answered, recorded_request, replay
from gateway_support.upstream import FakeUpstream

from ladder.core.upstream_replies import Chunk
from ladder.core.upstream_replies import chunk as checked_chunk
from ladder.gateway.responses_chat import custom_tool_names, echo, to_chat_body
from ladder.gateway.responses_protocol import ResponseCreateParams
from ladder.gateway.responses_stream import ResponsesStream

pytest_plugins = ["gateway_support.fixtures"]

WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_plain_response_is_routed_and_costed(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    raw = gateway.openai().responses.with_raw_response.create(
        model="ladder-1", instructions="Be brief.", input="What is the capital of France?"
    )
    response = raw.parse()
    assert response.status == "completed" and response.object == "response"
    assert response.model == raw.headers["x-ladder-model"] == "small-local"
    assert response.output_text == "small-local says hi"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (10, 5, 15)
    assert float(raw.headers["x-ladder-cost-usd"]) > 0
    ladder = response.model_extra["ladder"]  # type: ignore[index]
    assert ladder["model"] == "small-local" and ladder["cost_usd"] > 0 and ladder["baseline_model"] == "vision-pro"
    assert response.instructions == "Be brief."
    sent = upstream.seen[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert sent["model"] == "upstream-small-local"
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'ladder_requests_total{endpoint="responses",model="small-local"} 1.0' in metrics
    assert 'ladder_tokens_total{kind="completion",model="small-local"} 5.0' in metrics


def test_streaming_follows_the_responses_event_sequence(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    events = list(gateway.openai().responses.create(model="ladder-1", input="Hello", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kinds.count(kind) == 1, kind
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "small-local says hi"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "small-local says hi" and final.model == "small-local"
    assert final.usage is not None and final.usage.output_tokens == 3
    assert final.model_extra["ladder"]["cost_usd"] > 0  # type: ignore[index]
    metrics = httpx.get(f"{gateway.url}/metrics").text  # recorded once the stream ended
    assert 'ladder_requests_total{endpoint="responses",model="small-local"} 1.0' in metrics
    assert 'ladder_tokens_total{kind="completion",model="small-local"} 3.0' in metrics


def test_the_stream_helper_assembles_the_final_response(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    with gateway.openai().responses.stream(model="ladder-1", input="Hello") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == "small-local says hi"


def test_function_calls_and_their_outputs_round_trip(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    api = gateway.openai()
    first = api.responses.create(model="ladder-1", input="Weather in Paris?", tools=[WEATHER_TOOL])
    assert first.model == "mid-cloud"  # the capability filter: small-local has no tools
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert upstream.seen[-1].body["tools"][0]["function"]["parameters"] == WEATHER_TOOL["parameters"]
    follow_up = api.responses.create(
        model="ladder-1",
        tools=[WEATHER_TOOL],
        tool_choice="none",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            call.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert follow_up.output_text == "mid-cloud says hi"
    sent = upstream.seen[-1].body
    assert sent["tool_choice"] == "none"
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call.call_id, "type": "function", "function": {"name": "get_weather", "arguments": call.arguments}}
        ],
    }
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


def test_streaming_function_call(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    events = list(
        gateway.openai().responses.create(
            model="ladder-1", input="Weather in Paris?", tools=[WEATHER_TOOL], stream=True
        )
    )
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.output_text.delta" not in kinds
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.output_item.done").item  # type: ignore[union-attr]
    assert done.type == "function_call" and done.arguments == arguments == '{"city": "Paris"}'
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output[0].call_id == "call_1" and final.output[0].name == "get_weather"


def test_hosted_tools_and_reasoning_items_are_dropped(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    api = gateway.openai()
    response = api.responses.create(
        model="ladder-1",
        input=[
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Terse."}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
        ],
        tools=[{"type": "web_search"}],
        tool_choice="auto",
        reasoning={"effort": "low"},
        store=False,
        include=["reasoning.encrypted_content"],
        max_output_tokens=50,
    )
    assert response.output_text == "small-local says hi"  # no tool left: small-local may answer
    sent = upstream.seen[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Terse."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
    ]
    assert "tools" not in sent and "tool_choice" not in sent and sent["max_tokens"] == 50
    assert not {"reasoning", "store", "include"} & set(sent)


def test_refusals_come_in_openais_envelope(gateway: RunningGateway) -> None:
    api = gateway.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        api.responses.create(model="ladder-1", input="Hi", previous_response_id="resp_123")
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert "whole conversation" in caught.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        api.responses.create(model="gpt-9", input="Hi")
    reply = httpx.post(
        f"{gateway.url}/v1/responses",
        headers=AUTH,
        json={"model": "ladder-1", "input": [{"type": "function_call", "name": "f"}]},
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"].startswith("input.0")


def test_a_broken_stream_ends_with_response_failed(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.set("small-local", "midstream")
    events = list(gateway.openai().responses.create(model="ladder-1", input="Hello", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None  # type: ignore[union-attr]


def test_custom_tools_become_one_string_functions() -> None:
    params = ResponseCreateParams.model_validate(
        {
            "model": "ladder-1",
            "input": [
                {"role": "user", "content": "Patch it"},
                {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
                {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"},
            ],
            "tools": [{"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}}],
            "tool_choice": {"type": "custom", "name": "apply_patch"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}},
        }
    )
    body = to_chat_body(params)
    assert body["tools"][0]["function"]["parameters"]["required"] == ["input"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assert json.loads(body["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"input": "*** Begin Patch"}
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "done"}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}},
    }




@pytest.mark.parametrize("stream", [True, False])
def test_codexs_first_request_is_answered(gateway: RunningGateway, upstream: FakeUpstream, stream: bool) -> None:
    """The first request Codex 0.171 sends (recorded by gateway_support/recorder.py)."""
    recorded = recorded_request("codex_responses")
    body = {**recorded["body"], "stream": stream}
    reply = replay(gateway.url, recorded, body, AUTH)
    answer = answered(reply, stream, "response.created", "response.completed")
    assert answer is None or answer["output"][0]["type"] == "function_call"
    sent = upstream.seen[-1].body
    developer = ["\n".join(p["text"] for p in i["content"]) for i in body["input"] if i["role"] == "developer"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "user"]
    assert sent["messages"][0]["content"] == "\n\n".join(developer)
    functions = [t["name"] for t in body["tools"] if t["type"] == "function"]
    assert [t["function"]["name"] for t in sent["tools"]] == functions  # web_search and the namespace dropped
    assert not {"reasoning", "store", "include", "prompt_cache_key", "client_metadata"} & set(sent)


def events_of(stream: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in stream.decode().splitlines() if line.startswith("data: ")]


def chunk(delta: dict[str, Any], finish: str | None = None) -> Chunk:
    return checked_chunk(json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}), "m")


def test_a_streamed_custom_tool_call_is_unwrapped_and_a_cut_answer_is_incomplete() -> None:
    params = ResponseCreateParams.model_validate(
        {"model": "ladder", "input": "Patch it", "tools": [{"type": "custom", "name": "apply_patch"}]}
    )
    stream = ResponsesStream(echo(params, "resp_1", "mid-cloud"), custom_tool_names(params))
    out = stream.start()
    out += stream.feed(chunk({"content": "Patching."}))
    head = {"index": 0, "id": "call_9", "function": {"name": "apply_patch", "arguments": '{"input": "*** Be'}}
    out += stream.feed(chunk({"tool_calls": [head]}))
    out += stream.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'gin Patch"}'}}]}, "length"))
    out += stream.finish({"cost_usd": 0.5})
    events = events_of(out)
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" not in kinds  # a custom tool's input comes whole
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done[0]["type"] == "message" and done[0]["content"][0]["text"] == "Patching."
    assert done[1] == {
        "type": "custom_tool_call",
        "id": "fc_resp_1_1",
        "call_id": "call_9",
        "name": "apply_patch",
        "input": "*** Begin Patch",
        "status": "completed",
    }
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["ladder"] == {"cost_usd": 0.5} and len(last["response"]["output"]) == 2
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
