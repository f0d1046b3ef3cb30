"""The capability filter: media, tools, JSON mode, context windows and sensitive requests pick the models."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_support.common import RunningGateway
from gateway_support.pool import NAMES
from gateway_support.upstream import FakeUpstream

from ladder.core.pool import Capability, load_pool
from ladder.core.pricing import estimate_tokens as core_estimate
from ladder.gateway.capabilities import (
    Requirements,
    estimate_tokens,
    exclusions,
    needed_capabilities,
    prompt_tokens,
)

pytest_plugins = ["gateway_support.fixtures"]

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}


@pytest.mark.parametrize(
    ("body", "needed"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, set()),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, IMAGE]}]},
            {Capability.IMAGE},
        ),
        ({"messages": [{"role": "user", "content": [AUDIO]}]}, {Capability.AUDIO}),
        (
            {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {}}]}]},
            {Capability.VIDEO},
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
            {Capability.TOOLS},
        ),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "c"}]}, {Capability.TOOLS}),
        ({"messages": [], "response_format": {"type": "json_schema", "json_schema": {}}}, {Capability.JSON}),
        ({"messages": [], "response_format": {"type": "text"}}, set()),
    ],
)
def test_needed_capabilities(body: dict[str, Any], needed: set[Capability]) -> None:
    assert needed_capabilities(body) == frozenset({Capability.TEXT, *needed})


def test_exclusions_name_their_reason(test_pool: Any) -> None:
    pool = load_pool(test_pool)
    needs = Requirements(frozenset({Capability.TEXT, Capability.TOOLS}), 5000, sensitive=False)
    assert exclusions(pool, needs) == {"small-local": "lacks tools"}
    long = Requirements(frozenset({Capability.TEXT}), 40000, sensitive=False)
    assert set(exclusions(pool, long)) == {"small-local", "mid-cloud"}
    sensitive = Requirements(frozenset({Capability.TEXT}), 10, sensitive=True)
    assert set(exclusions(pool, sensitive)) == {"mid-cloud", "vision-pro"}


@pytest.mark.parametrize("text", ["hello world", "日本語のテキスト", "mixed 日本 text", "x" * 10_001])
def test_token_estimate_matches_the_core(text: str) -> None:
    assert estimate_tokens(text) == core_estimate(text)


def test_prompt_tokens_count_every_message_and_tool() -> None:
    small = prompt_tokens({"messages": [{"role": "user", "content": "a" * 400}]})
    with_tools = prompt_tokens(
        {"messages": [{"role": "user", "content": "a" * 400}], "tools": [{"x": "y" * 400}]}
    )
    assert small == 100 and with_tools > 190


def test_images_go_only_to_vision_models(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    content = [{"type": "text", "text": "What is in this picture?"}, IMAGE]
    completion = gateway.openai().chat.completions.create(
        model="ladder-1",
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
    )
    assert completion.model == "vision-pro"
    assert completion.model_extra["ladder"]["excluded"] == {  # type: ignore[index]
        "small-local": "lacks image",
        "mid-cloud": "lacks image",
    }


def test_json_mode_skips_models_without_it(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    completion = gateway.openai().chat.completions.create(
        model="ladder-1",
        messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"},
    )
    assert completion.model == "mid-cloud"


def test_long_prompts_skip_small_context_windows(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    prompt = "word " * 20000  # ~25K tokens: over small-local's 4096
    completion = gateway.openai().chat.completions.create(
        model="ladder-1", messages=[{"role": "user", "content": prompt}]
    )
    assert completion.model == "mid-cloud"


def test_sensitive_requests_stay_on_prem(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="ladder-0",
        messages=[{"role": "user", "content": "Our Q3 numbers"}],
        extra_headers={"x-ladder-sensitive": "true"},
    )
    assert raw.parse().model == "small-local"
    assert [s.model for s in upstream.seen] == ["small-local"]


def test_sensitive_rule_from_settings(start_gateway: Any, upstream: FakeUpstream) -> None:
    gateway = start_gateway(sensitive_patterns=[r"(?i)\bconfidential\b"])
    client = gateway.openai()
    assert (
        client.chat.completions.create(
            model="ladder-0", messages=[{"role": "user", "content": "CONFIDENTIAL: the merger plan"}]
        ).model
        == "small-local"
    )
    assert (
        client.chat.completions.create(
            model="ladder-0", messages=[{"role": "user", "content": "the weather"}]
        ).model
        == "vision-pro"
    )


def test_fallback_order_only_holds_qualifying_models(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.set("vision-pro", "fail")
    content = [{"type": "text", "text": "Describe"}, IMAGE]
    import openai

    with pytest.raises(openai.APIStatusError) as caught:
        gateway.openai().chat.completions.create(
            model="ladder",
            messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
        )
    assert caught.value.status_code == 502
    assert {s.model for s in upstream.seen} == {"vision-pro"} and set(NAMES) > {"vision-pro"}
