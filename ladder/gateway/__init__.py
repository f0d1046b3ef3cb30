"""Ladder's OpenAI- and Anthropic-compatible gateway: score, route, forward, fall back, account."""

from ladder.gateway.app import create_app
from ladder.gateway.settings import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]
