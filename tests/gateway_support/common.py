"""Constants and handles shared by the gateway tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai
from fastapi import FastAPI

from ladder.gateway.settings import Settings

API_KEY = "test-key-0123456789"
UPSTREAM_KEY_ENV = "LADDER_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-secret-value-42"


@dataclass
class RunningGateway:
    """A gateway served by uvicorn on loopback."""

    url: str
    app: FastAPI
    settings: Settings

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=API_KEY, max_retries=0, **kwargs)
