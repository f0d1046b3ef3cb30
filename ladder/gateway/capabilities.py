"""The capability filter: which pool models a request may go to, before the policy sees any score."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ladder.core.locality import refusal
from ladder.core.pool import Capability, PoolConfig
from ladder.core.pricing import estimate_tokens
from ladder.core.prompt import content_text

PART_CAPABILITIES = {
    "image_url": Capability.IMAGE,
    "image": Capability.IMAGE,
    "input_image": Capability.IMAGE,
    "input_audio": Capability.AUDIO,
    "audio": Capability.AUDIO,
    "audio_url": Capability.AUDIO,
    "video": Capability.VIDEO,
    "video_url": Capability.VIDEO,
    "input_video": Capability.VIDEO,
}


@dataclass(frozen=True)
class Requirements:
    """What a request needs from a model."""

    capabilities: frozenset[Capability]
    input_tokens: int
    sensitive: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "capabilities": sorted(c.value for c in self.capabilities),
            "input_tokens": self.input_tokens,
            "sensitive": self.sensitive,
        }


def _parts(messages: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            yield from (p for p in content if isinstance(p, Mapping))


def needed_capabilities(body: Mapping[str, Any]) -> frozenset[Capability]:
    """Media parts, tools and JSON mode in an OpenAI-shaped request body."""
    messages = body.get("messages") or []
    needed = {Capability.TEXT}
    for part in _parts(messages):
        capability = PART_CAPABILITIES.get(str(part.get("type")))
        if capability is not None:
            needed.add(capability)
    uses_tools = bool(body.get("tools") or body.get("functions")) or any(
        m.get("tool_calls") or m.get("role") == "tool" for m in messages
    )
    if uses_tools:
        needed.add(Capability.TOOLS)
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in ("json_object", "json_schema"):
        needed.add(Capability.JSON)
    return frozenset(needed)


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """Estimated input tokens of the whole request: every message's text, tool calls and tool definitions."""
    pieces = []
    for message in body.get("messages") or []:
        pieces.append(content_text(message.get("content")))
        if message.get("tool_calls"):
            pieces.append(json.dumps(message["tool_calls"]))
    for key in ("tools", "functions"):
        if body.get(key):
            pieces.append(json.dumps(body[key]))
    return estimate_tokens("\n".join(p for p in pieces if p))


def requirements(body: Mapping[str, Any], sensitive: bool) -> Requirements:
    return Requirements(needed_capabilities(body), prompt_tokens(body), sensitive)


def exclusions(pool: PoolConfig, needs: Requirements) -> dict[str, str]:
    """Models the request must not reach, each with the reason (passed to the policy as ``excluded``)."""
    out: dict[str, str] = {}
    for model in pool.models:
        missing = needs.capabilities - model.capabilities
        if missing:
            out[model.name] = f"lacks {', '.join(sorted(c.value for c in missing))}"
        elif needs.input_tokens > model.context_window:
            out[model.name] = (
                f"prompt of ~{needs.input_tokens} tokens exceeds its {model.context_window}-token window"
            )
        elif (why := refusal(model, needs.sensitive)) is not None:
            out[model.name] = f"the request is {why}"
    return out
