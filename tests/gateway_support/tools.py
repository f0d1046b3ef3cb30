"""Tool declarations as OpenAI's chat API and Anthropic's Messages API write them, for the gateway tests."""

from __future__ import annotations

from typing import Any


def _one_string(argument: str) -> dict[str, Any]:
    return {"type": "object", "properties": {argument: {"type": "string"}}}


def chat_tool(name: str, description: str, argument: str) -> dict[str, Any]:
    """A chat completions function tool taking one string ``argument``."""
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": _one_string(argument)},
    }


def anthropic_tool(name: str, description: str, argument: str) -> dict[str, Any]:
    """The same tool as the Messages API declares it."""
    return {"name": name, "description": description, "input_schema": _one_string(argument)}


WEATHER = chat_tool("get_weather", "Weather for a city", "city")
ANTHROPIC_WEATHER = anthropic_tool("get_weather", "Weather for a city", "city")
