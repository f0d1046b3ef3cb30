"""Ladder's OpenAI- and Anthropic-compatible gateway: score, route, forward, fall back, account."""

from service.app import create_app
from service.settings import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]
