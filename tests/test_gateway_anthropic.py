"""The Anthropic Messages API through the gateway with the official ``anthropic`` client."""

from __future__ import annotations

import json

import anthropic
import pytest
from gateway_support.common import API_KEY, RunningGateway
from gateway_support.recorded import answered, recorded_request, replay
from gateway_support.tools import ANTHROPIC_WEATHER
from gateway_support.upstream import FakeUpstream

from ladder.gateway.anthropic_protocol import MessageCreateParams, to_chat_body

pytest_plugins = ["gateway_support.fixtures"]

def client(gateway: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=API_KEY, max_retries=0)


def test_plain_message(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    raw = client(gateway).messages.with_raw_response.create(
        model="ladder-1",
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    message = raw.parse()
    assert message.model == raw.headers["x-ladder-model"] == "small-local"
    assert message.content[0].type == "text" and message.content[0].text == "small-local says hi"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 10 and message.usage.output_tokens == 5
    sent = upstream.seen[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    assert sent["max_tokens"] == 64


def test_streaming_message_follows_anthropics_event_sequence(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    with client(gateway).messages.stream(
        model="ladder-1", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_start" in events and "content_block_stop" in events and "message_delta" in events
    assert final.content[0].text == "small-local says hi"  # type: ignore[union-attr]
    assert final.model == "small-local" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_tools_round_trip(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    api = client(gateway)
    message = api.messages.create(
        model="ladder-1",
        max_tokens=64,
        tools=[ANTHROPIC_WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert message.model == "mid-cloud" and message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    assert upstream.seen[-1].body["tools"][0]["function"]["parameters"] == ANTHROPIC_WEATHER["input_schema"]
    follow_up = api.messages.create(
        model="ladder-1",
        max_tokens=64,
        tools=[ANTHROPIC_WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "none"},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [block.model_dump()]},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}],
            },
        ],
    )
    assert follow_up.content[0].type == "text"
    sent = upstream.seen[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2] == {"role": "tool", "tool_call_id": block.id, "content": "sunny"}


def test_streaming_tool_use(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    with client(gateway).messages.stream(
        model="ladder-1",
        max_tokens=64,
        tools=[ANTHROPIC_WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use" and block.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_a_broken_stream_raises_in_the_client(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.set("small-local", "midstream")
    with pytest.raises(anthropic.APIStatusError, match="mid-stream"):  # noqa: SIM117
        with client(gateway).messages.stream(
            model="ladder-1", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
        ) as stream:
            for _ in stream:
                pass


def test_errors_reach_the_client_typed(gateway: RunningGateway) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client(gateway).messages.create(model="claude-9", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError):
        client(gateway).messages.create(model="ladder", max_tokens=8, messages=[])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.url, api_key="wrong-key-0123456", max_retries=0).messages.create(
            model="ladder", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )


def test_count_tokens(gateway: RunningGateway) -> None:
    count = client(gateway).messages.count_tokens(
        model="ladder", messages=[{"role": "user", "content": "x" * 400}], system="be brief"
    )
    assert count.input_tokens == 102


def test_images_translate_to_image_parts() -> None:
    params = MessageCreateParams.model_validate(
        {
            "model": "ladder",
            "max_tokens": 8,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                        },
                        {"type": "text", "text": "What is this?"},
                    ],
                }
            ],
            "stop_sequences": ["END"],
            "tools": [ANTHROPIC_WEATHER],
            "tool_choice": {"type": "any"},
        }
    )
    body = to_chat_body(params)
    assert body["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    assert body["stop"] == ["END"] and body["tool_choice"] == "required"


DROPPED_FIELDS = ("thinking", "context_management", "output_config", "metadata", "system", "cache_control")


@pytest.mark.parametrize("stream", [True, False])
def test_claude_codes_first_request_is_answered(gateway: RunningGateway, upstream: FakeUpstream, stream: bool) -> None:
    recorded = recorded_request("claude_code_messages")  # the first request Claude Code 2.1 sends
    body = {**recorded["body"], "model": "ladder-1", "stream": stream}
    system_turns = [m for m in body["messages"] if m["role"] == "system"]
    assert system_turns and len(body["tools"]) == 12  # the shape the gateway used to refuse
    reply = replay(gateway.url, recorded, body, {"x-api-key": API_KEY})
    answer = answered(reply, stream, "message_start", "message_stop")
    assert answer is None or answer["content"][0]["type"] == "tool_use"
    sent = upstream.seen[-1].body
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    system = sent["messages"][0]["content"]
    assert body["system"][1]["text"] in system and system_turns[0]["content"][0]["text"] in system
    assert system.index(body["system"][1]["text"]) < system.index(system_turns[0]["content"][0]["text"])
    assert len(sent["tools"]) == 12 and sent["max_tokens"] == body["max_tokens"]
    assert not set(DROPPED_FIELDS) & set(sent) and "cache_control" not in json.dumps(sent)


def test_fields_a_chat_model_cannot_use_are_accepted_through_the_sdk(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    message = client(gateway).messages.create(
        model="ladder-1",
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": "Hello"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "text", "text": "Hi."},
                ],
            },
            {"role": "system", "content": "Answer in French."},  # type: ignore[list-item]
            {"role": "user", "content": [{"type": "text", "text": "Again", "cache_control": {"type": "ephemeral"}}]},
        ],
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": "someone"},
        extra_body={"context_management": {"edits": []}, "output_config": {"effort": "low"}, "top_k": 5},
    )
    assert message.content[0].type == "text"
    sent = upstream.seen[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief.\n\nAnswer in French."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": [{"type": "text", "text": "Again"}]},
    ]
    assert not {"thinking", "context_management", "output_config", "top_k"} & set(sent)


def test_server_tools_are_dropped_and_output_schemas_translated() -> None:
    params = MessageCreateParams.model_validate(
        {
            "model": "ladder",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "Search, then answer in JSON."}],
            "tools": [
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
                {"type": "custom", **ANTHROPIC_WEATHER},
            ],
            "tool_choice": {"type": "tool", "name": "web_search"},
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "low"},
        }
    )
    body = to_chat_body(params)
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert "tool_choice" not in body  # it named a tool that was dropped: the model chooses
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True},
    }
