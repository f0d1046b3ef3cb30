"""Gateway replicas that share state: their environment, a client's chat, and reads polled until another
replica's write has landed."""

from __future__ import annotations

import time
from typing import Any

import httpx

from gateway_support.common import API_KEY, UPSTREAM_KEY, UPSTREAM_KEY_ENV
from gateway_support.serve_process import clean_env

AGENT_KEY = "sk-coding-agent-key-0123456789"
# vision-pro answers the fake's 10 + 5 tokens for $0.000105: one answer spends this budget.
AGENT_PROFILE = {"name": "coding-agent", "key": AGENT_KEY, "daily_budget_usd": 0.0001}
MESSAGES = [{"role": "user", "content": "Refactor the billing module"}]
SETTLE_S = 10.0  # the longest one replica's asynchronous write may take to show on the other


def replica_env(**settings: str) -> dict[str, str]:
    """A ``ladder serve`` replica's environment: the test key, session margin 0.2, no retries, ``settings``."""
    return clean_env(
        LADDER_API_KEYS=API_KEY,
        LADDER_SESSION_MARGIN="0.2",
        LADDER_RETRIES="0",
        **{UPSTREAM_KEY_ENV: UPSTREAM_KEY},
        **settings,
    )


def auth(key: str = API_KEY, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


def chat(base: str, key: str = API_KEY, session: str | None = None, **body: Any) -> httpx.Response:
    """``MESSAGES`` to replica ``base`` as the client ``key``, in ``session`` if given."""
    headers = auth(key, **({"x-ladder-session-id": session} if session else {}))
    json = {"model": "ladder", "messages": MESSAGES, **body}
    return httpx.post(f"{base}/v1/chat/completions", json=json, headers=headers, timeout=30)


def spent_today(base: str, key: str) -> float:
    """The key's spend today as replica ``base`` reads it, once some has landed (or after ``SETTLE_S``)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        usage = httpx.get(f"{base}/v1/usage", headers=auth(key)).json()
        spent = float(usage["data"][0]["day"]["cost_usd"])
        if spent > 0 or time.monotonic() > deadline:
            return spent
        time.sleep(0.02)


def routed_for_session(base: str, session: str) -> str:
    """The model replica ``base`` would keep for ``session`` once the pin has moved off vision-pro (the first
    choice); ``/v1/route`` reads pins and never writes them, so asking does not race the other replica."""
    headers = auth(**{"x-ladder-session-id": session})
    deadline = time.monotonic() + SETTLE_S
    while True:
        decision = httpx.post(f"{base}/v1/route", json={"model": "ladder", "messages": MESSAGES}, headers=headers)
        model = str(decision.json()["model"])
        if model != "vision-pro" or time.monotonic() > deadline:
            return model
        time.sleep(0.02)
