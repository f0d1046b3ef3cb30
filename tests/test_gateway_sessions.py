"""Session affinity through the real gateway with the official ``openai`` and ``anthropic`` clients.

The test pool's P(correct) is about 0.50 (small-local, on-prem), 0.73 (mid-cloud, tools) and 0.88
(vision-pro, tools and images) for any prompt. A conversation is put on a model other than the fresh choice
the way it happens in production, by a fallback (vision-pro fails on the first turn, mid-cloud answers) or
by a sensitive first turn (on-prem only), and the later turns show whether the session keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest
from gateway_support.common import API_KEY, RunningGateway
from gateway_support.tools import ANTHROPIC_WEATHER, WEATHER
from gateway_support.upstream import FakeUpstream

from ladder.gateway.sessions import opening_digest
from ladder.gateway.state import MemoryState

pytest_plugins = ["gateway_support.fixtures"]

SYSTEM = {"role": "system", "content": "You are a travel assistant. Use the tools."}


def session(gateway: RunningGateway, name: str) -> Any:
    return gateway.openai(default_headers={"x-ladder-session-id": name})


def ask(client: Any, messages: list[dict[str, Any]], **kwargs: Any) -> tuple[Any, httpx.Headers]:
    raw = client.chat.completions.with_raw_response.create(messages=messages, **kwargs)
    return raw.parse(), raw.headers


def test_a_tool_conversation_stays_on_the_model_that_answered_it(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(session_margin=0.2)
    client = session(gateway, "trip-42")
    messages: list[dict[str, Any]] = [SYSTEM, {"role": "user", "content": "Weather in Paris and Berlin?"}]

    upstream.set("vision-pro", "fail")  # the first choice fails once: mid-cloud answers the first turn
    reply, headers = ask(client, messages, model="ladder", tools=[WEATHER])
    assert headers["x-ladder-routed-model"] == "vision-pro" and headers["x-ladder-model"] == "mid-cloud"
    assert headers["x-ladder-session"] == "new"
    upstream.reset()  # vision-pro is healthy again: every fresh decision would pick it

    seen_models = []
    for turn in range(2, 10):
        messages.append(reply.choices[0].message.model_dump(exclude_none=True))
        for call in reply.choices[0].message.tool_calls or []:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'})
        if turn == 5:
            messages.append({"role": "user", "content": "And what should I pack for tomorrow?"})
        if turn == 7:  # a streamed turn keeps the session too
            with client.chat.completions.with_streaming_response.create(
                model="ladder", messages=messages, tools=[WEATHER], stream=True
            ) as response:
                assert response.headers["x-ladder-session"] == "kept"
                assert response.headers["x-ladder-model"] == "mid-cloud"
                text = "".join(response.iter_text())
            assert "get_weather" in text and "[DONE]" in text
            messages.append({"role": "user", "content": "Thanks, anything else?"})
            reply, headers = ask(client, messages, model="ladder", tools=[WEATHER], tool_choice="none")
            assert reply.choices[0].message.content == "mid-cloud says hi"
        else:
            reply, headers = ask(client, messages, model="ladder", tools=[WEATHER])
        ladder = reply.model_extra["ladder"]
        assert headers["x-ladder-session"] == "kept", turn
        assert reply.model == headers["x-ladder-model"] == "mid-cloud"
        assert ladder["session"]["kept"] is True and ladder["session"]["source"] == "header"
        assert ladder["reason"].startswith("kept for session: mid-cloud answered this conversation before")
        assert "afresh: vision-pro" in ladder["reason"]
        seen_models.append(reply.model)
    assert len(messages) > 15 and set(seen_models) == {"mid-cloud"}
    assert upstream.count("vision-pro") == 0 and upstream.count("mid-cloud") == 9

    other, headers = ask(session(gateway, "another-trip"), messages[:2], model="ladder", tools=[WEATHER])
    assert other.model == "vision-pro" and headers["x-ladder-session"] == "new"


def test_a_model_far_below_the_best_is_left_at_the_next_turn(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway()  # default margin 0.1: mid-cloud (0.73) is 0.15 below vision-pro (0.88)
    client = session(gateway, "conv-margin")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    upstream.set("vision-pro", "fail")
    first, _ = ask(client, messages, model="ladder", tools=[WEATHER])
    assert first.model == "mid-cloud"
    upstream.reset()
    messages += [first.choices[0].message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    second, headers = ask(client, messages, model="ladder", tools=[WEATHER])
    ladder = second.model_extra["ladder"]
    assert second.model == "vision-pro" and headers["x-ladder-session"] == "moved"
    assert ladder["session"]["previous_model"] == "mid-cloud"
    assert (
        "session moved from mid-cloud: its P(correct) 0.731 is 0.148 below the best 0.879" in ladder["reason"]
    )
    messages += [second.choices[0].message.model_dump(exclude_none=True)]
    third, headers = ask(client, messages, model="ladder", tools=[WEATHER])
    assert third.model == "vision-pro" and headers["x-ladder-session"] == "kept"


def test_the_opening_names_a_conversation_when_the_client_sends_no_id(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(session_margin=0.5)
    client = gateway.openai()
    opening = [{"role": "system", "content": "Internal HR assistant."}, {"role": "user", "content": "Hi"}]
    first, headers = ask(client, opening, model="ladder", extra_headers={"x-ladder-sensitive": "true"})
    assert first.model == "small-local" and headers["x-ladder-session"] == "new"
    later = [*opening, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Summarise it"}]
    second, headers = ask(client, later, model="ladder")
    ladder = second.model_extra["ladder"]
    assert second.model == "small-local" and headers["x-ladder-session"] == "kept"
    assert ladder["session"]["source"] == "opening" and "afresh: vision-pro" in ladder["reason"]
    stranger = [{"role": "system", "content": "Another app."}, *later[1:]]
    third, headers = ask(client, stranger, model="ladder")
    assert third.model == "vision-pro" and headers["x-ladder-session"] == "new"
    fresh_lane, headers = ask(client, later, model="ladder-0.3")  # another trade-off: routed afresh
    assert fresh_lane.model == "mid-cloud" and headers["x-ladder-session"] == "new"


def test_a_turn_needing_a_capability_or_on_prem_leaves_the_session_model(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(session_margin=1.0)  # only exclusions can move these sessions
    client = session(gateway, "conv-needs")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Plan a day in Rome"}]
    first, _ = ask(client, messages, model="ladder-1")
    assert first.model == "small-local"
    messages += [{"role": "assistant", "content": "Sure"}, {"role": "user", "content": "Check the weather"}]
    second, headers = ask(client, messages, model="ladder-1", tools=[WEATHER])
    ladder = second.model_extra["ladder"]
    assert second.model == "mid-cloud" and headers["x-ladder-session"] == "moved"
    assert "session moved from small-local: lacks tools" in ladder["reason"]

    cloud = session(gateway, "conv-private")
    turn = [{"role": "user", "content": "Draft a letter"}]
    assert ask(cloud, turn, model="ladder")[0].model == "vision-pro"
    turn += [{"role": "assistant", "content": "Done"}, {"role": "user", "content": "Add my salary: 90k"}]
    private, headers = ask(cloud, turn, model="ladder", extra_headers={"x-ladder-sensitive": "true"})
    assert private.model == "small-local" and headers["x-ladder-session"] == "moved"
    assert "sensitive" in private.model_extra["ladder"]["session"]["why"]
    assert [s.model for s in upstream.seen][-1] == "small-local"


def test_claude_code_sessions_are_named_by_metadata_user_id(
    start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_gateway(session_margin=0.2)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=API_KEY, max_retries=0)
    metadata = {"user_id": "user_0f3a_account_77_session_5d1c"}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Fix the failing test in app.py"}]
    common: dict[str, Any] = {"model": "ladder", "max_tokens": 256, "tools": [ANTHROPIC_WEATHER]}

    upstream.set("vision-pro", "fail")
    raw = client.messages.with_raw_response.create(messages=messages, metadata=metadata, **common)
    first = raw.parse()
    assert first.model == "mid-cloud" and raw.headers["x-ladder-session"] == "new"
    upstream.reset()
    for turn in range(4):
        tool = next(b for b in first.content if b.type == "tool_use")
        messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "ok"}]}
        )
        system = f"Claude Code, compacted context #{turn}"  # the opening changes; the session id does not
        if turn == 2:
            with client.messages.stream(
                messages=messages, metadata=metadata, system=system, **common
            ) as stream:
                assert stream.response.headers["x-ladder-session"] == "kept"
                first = stream.get_final_message()
        else:
            raw = client.messages.with_raw_response.create(
                messages=messages, metadata=metadata, system=system, **common
            )
            first = raw.parse()
            assert raw.headers["x-ladder-session"] == "kept"
            assert first.model_extra["ladder"]["session"]["source"] == "metadata"  # type: ignore[index]
        assert first.model == "mid-cloud"
    assert upstream.count("vision-pro") == 0
    other = client.messages.create(
        messages=messages[:1], metadata={"user_id": "user_0f3a_account_77_session_9999"}, **common
    )
    assert other.model == "vision-pro"


def test_route_reads_sessions_without_pinning_and_pinned_requests_skip_them(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    headers = {"authorization": f"Bearer {API_KEY}", "x-ladder-session-id": "dry-run"}
    body = {"model": "ladder", "messages": [{"role": "user", "content": "hello"}]}
    with httpx.Client(base_url=gateway.url, headers=headers) as http:
        for _ in range(2):
            decision = http.post("/v1/route", json=body).json()
            assert decision["session"]["status"] == "new"  # /v1/route never stores a pin
        chat = http.post("/v1/chat/completions", json=body)
        assert chat.headers["x-ladder-session"] == "new"
        assert http.post("/v1/route", json=body).json()["session"]["status"] == "kept"
        pinned = http.post("/v1/chat/completions", json={**body, "model": "mid-cloud"})
        assert pinned.status_code == 200 and "x-ladder-session" not in pinned.headers
        off = http.post("/v1/chat/completions", json={**body, "model": "ladder-0"})
        assert off.headers["x-ladder-session"] == "new"
        metrics = http.get("/metrics").text
    assert 'ladder_sessions_total{outcome="new"}' in metrics


def test_sessions_can_be_switched_off(start_gateway: Callable[..., RunningGateway]) -> None:
    gateway = start_gateway(session_affinity=False)
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="ladder", messages=[{"role": "user", "content": "hello"}]
    )
    assert "x-ladder-session" not in raw.headers
    assert raw.parse().model_extra["ladder"]["session"] is None  # type: ignore[index]


def test_the_opening_digest_ignores_later_turns_and_tracks_the_system_prompt() -> None:
    opening = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "text", "text": "Q"}]},
    ]
    later = [*opening, {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}]
    assert opening_digest(opening) == opening_digest(later) is not None
    assert opening_digest([{"role": "system", "content": "T"}, *opening[1:]]) != opening_digest(opening)
    assert opening_digest([{"role": "system", "content": "only a system prompt"}]) is None
    assert json.dumps(opening_digest(opening)).isascii()


@pytest.mark.asyncio
async def test_a_session_is_forgotten_after_its_ttl() -> None:
    now = [1000.0]
    state = MemoryState(clock=lambda: now[0])
    assert await state.put("ladder:session:x", "mid-cloud", ttl_s=60)
    assert not await state.put("ladder:session:x", "vision-pro", ttl_s=60, only_new=True)
    now[0] += 59.9
    assert await state.get("ladder:session:x") == "mid-cloud"
    now[0] += 0.2
    assert await state.get("ladder:session:x") is None
    assert await state.put("ladder:session:x", "vision-pro", ttl_s=60, only_new=True)
