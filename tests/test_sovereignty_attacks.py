"""Attacks on sovereignty: a marker hidden from a naive scan must never reach a cloud model, by any path.

Loopback stub upstreams (one on-prem, two cloud) keep every byte they receive and count the calls; a leak is
the marker anywhere in what a cloud stub received (every key and string, read as a person would). The
gateway runs with shadow judging on (cloud reference and judge) and a cascade in its pool; the marker comes
full-width, split by zero-width characters or soft hyphens, as a PDF ligature, as an object key, as a JSON
schema property name, in a tool definition and in a system message, for chat completions and messages,
plain and streamed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support.common import API_KEY, AUTH, UPSTREAM_KEY, UPSTREAM_KEY_ENV
from gateway_support.pool import shared_pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ladder.bench.server_thread import ServerThread
from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.settings import load_settings

MARKER = "Project Firefly"
PATTERN = r"project\s+firefly"
ON_PREM = "small-local"
CLOUDS = ("mid-cloud", "vision-pro")
ANSWER = '{"answer_1": 1, "answer_2": 0}'  # an answer, and a judge's verdict


def read_as_a_person(text: str) -> str:
    """Invisible characters gone, compatibility forms (full width, ligatures) as plain letters, one case,
    one space (written here independently of the gateway's scan)."""
    visible = "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Mn"))
    plain = unicodedata.normalize("NFKC", visible).casefold()
    return " ".join(plain.split())


def strings(value: Any) -> Iterator[str]:
    """Every key and string of a JSON value, and of JSON documents inside strings."""
    if isinstance(value, str):
        yield value
        try:
            inner = json.loads(value)
        except ValueError:
            return
        if isinstance(inner, dict | list):
            yield from strings(inner)
    elif isinstance(value, dict):
        for key, child in value.items():
            yield key
            yield from strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from strings(child)


def carries_marker(raw: bytes) -> bool:
    folded = read_as_a_person(MARKER)
    texts = [raw.decode("utf-8", "replace"), *strings(json.loads(raw))]
    return any(folded in read_as_a_person(t) for t in texts)


@dataclass
class Stubs:
    """Every request the stub upstreams received, raw, by model."""

    received: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self, model: str) -> list[bytes]:
        with self.lock:
            return [raw for m, raw in self.received if m == model]

    def leaks(self) -> list[str]:
        """The cloud models that received the marker."""
        return [m for m in CLOUDS if any(carries_marker(raw) for raw in self.calls(m))]

    def cloud_calls(self) -> int:
        return sum(len(self.calls(m)) for m in CLOUDS)

    def clear(self) -> None:
        with self.lock:
            self.received.clear()


def stub_app(stubs: Stubs) -> Starlette:
    async def complete(request: Request) -> Response:
        model = request.path_params["model"]
        raw = await request.body()
        with stubs.lock:
            stubs.received.append((model, raw))
        body = json.loads(raw)
        usage = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
        if not body.get("stream"):
            message = {"role": "assistant", "content": ANSWER}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            reply = {
                "id": "c",
                "object": "chat.completion",
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
            return JSONResponse(reply)

        async def events() -> Iterator[bytes]:  # type: ignore[misc]
            for delta, finish in (({"role": "assistant", "content": ANSWER}, None), ({}, "stop")):
                chunk = {"id": "c", "object": "chat.completion.chunk", "model": model}
                chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield f"data: {json.dumps({'id': 'c', 'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")  # type: ignore[arg-type]

    return Starlette(routes=[Route("/{model}/v1/chat/completions", complete, methods=["POST"])])


@pytest.fixture(scope="module")
def stubs() -> Iterator[tuple[Stubs, ServerThread]]:
    state = Stubs()
    with ServerThread(stub_app(state)) as server:
        yield state, server


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, stubs: tuple[Stubs, ServerThread]) -> tuple[Path, Router]:
    """The test pool behind the stubs; the on-prem model takes tools and JSON; cascades start cheapest."""
    path = shared_pool(
        tmp_path_factory.mktemp("attacks"),
        stubs[1].url,
        UPSTREAM_KEY_ENV,
        models={"small-local": {"capabilities": ["text", "tools", "json"]}},
        routing={"cascade": {"first": "cheapest", "router_accept_p": 0.99, "agreement": True}},
    )
    return path, Router.from_pool(load_pool(path))


@dataclass
class Running:
    url: str
    app: Any
    audit: Path
    traffic: Path

    @property
    def shadow(self) -> Any:
        return self.app.state.gateway.shadow


def start(pool: tuple[Path, Router], directory: Path, **overrides: Any) -> tuple[Running, ServerThread]:
    values: dict[str, Any] = {
        "pool": pool[0],
        "api_keys": [API_KEY],
        "sensitive_patterns": [PATTERN],
        "audit_log": str(directory / "audit.jsonl"),
        "audit_prompts": True,
        "traffic_db": str(directory / "traffic.db"),
        "shadow": {"share": 1.0, "reference_model": "vision-pro", "judge_model": "mid-cloud", "seed": 1},
        "retries": 0,
        **overrides,
    }
    app = create_app(load_settings(None, **values), router=pool[1])
    server = ServerThread(app).start()
    return Running(server.url, app, directory / "audit.jsonl", directory / "traffic.db"), server


@pytest.fixture(scope="module")
def gateway(pool: tuple[Path, Router], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
        running, server = start(pool, tmp_path_factory.mktemp("gw"))
        yield running
        server.stop()


def settled(shadow: Any) -> None:
    """Wait until shadow judging has nothing in flight (the state is asserted, never the time taken)."""
    deadline = time.monotonic() + 30
    while shadow.in_flight:
        assert time.monotonic() < deadline, "shadow judging never finished"
        time.sleep(0.01)


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.stream("POST", f"{url}{path}", json=body, headers=AUTH, timeout=30) as response:
        response.read()
    return response


# ---- the marker, disguised --------------------------------------------------------------------------------

FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in map(chr, range(0x21, 0x7F))}
INVISIBLE = ["\u200b", "\u00ad", "\u200d", "\u2060", "\ufeff", "\u200c"]
SPACES = [" ", "\u00a0", "\u3000", "\n", "  ", "\u2002"]


def full_width(text: str) -> str:
    return "".join(FULL_WIDTH.get(c, c) for c in text)


def with_invisible(text: str, char: str = "\u200b") -> str:
    return char.join(text)


DISGUISES: dict[str, str] = {
    "full width": full_width(MARKER),
    "zero-width spaces": "Project Fire\u200bfly",
    "soft hyphens": "Pro\u00adject Fire\u00adfly",
    "pdf ligature": "Project Fire\ufb02y",
    "joiners and case": "pRoJ\u200dECT\u00a0fIRe\u2060FLY",
}


@st.composite
def disguised(draw: st.DrawFn) -> str:
    """The marker with random case, spaces, invisible characters, full-width letters and ligatures."""
    words = ["Project", "Firefly"]
    out = []
    for word in words:
        letters = []
        for c in word:
            c = c.upper() if draw(st.booleans()) else c.lower()
            if draw(st.integers(0, 3)) == 0:
                c = FULL_WIDTH[c]
            letters.append(c)
            if draw(st.integers(0, 3)) == 0:
                letters.append(draw(st.sampled_from(INVISIBLE)))
        text = "".join(letters)
        if draw(st.booleans()):
            text = text.replace("fl", "\ufb02").replace("fi", "\ufb01")
        out.append(text)
    return draw(st.sampled_from(SPACES)).join(out)


# ---- where the marker is put ------------------------------------------------------------------------------

Place = Callable[[str], dict[str, Any]]
HI = [{"role": "user", "content": "hi"}]
CHAT_PLACES: dict[str, Place] = {
    "system message": lambda m: {"messages": [{"role": "system", "content": f"About {m}."}, *HI]},
    "metadata key": lambda m: {"messages": HI, "metadata": {m: "1"}},
    "json schema property": lambda m: {
        "messages": HI,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": {"type": "object", "properties": {m: {"type": "string"}}}},
        },
    },
    "tool definition": lambda m: {
        "messages": HI,
        "tools": [{"type": "function", "function": {"name": "lookup", "description": f"Files of {m}"}}],
    },
    "tool call arguments": lambda m: {
        "messages": [
            *HI,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "t",
                        "type": "function",
                        "function": {"name": "f", "arguments": json.dumps({"q": m})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "t", "content": "none"},
        ],
    },
}
MESSAGES_PLACES: dict[str, Place] = {
    "system": lambda m: {"system": f"About {m}.", "messages": HI},
    "metadata key": lambda m: {"metadata": {"user_id": "u1", m: "1"}, "messages": HI},
    "tool schema property": lambda m: {
        "messages": HI,
        "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {m: {"type": "string"}}}}],
    },
    "tool description": lambda m: {
        "messages": HI,
        "tools": [{"name": "f", "description": f"Files of {m}", "input_schema": {"type": "object"}}],
    },
}
RESPONSES_PLACES: dict[str, Place] = {
    "instructions": lambda m: {"instructions": f"About {m}.", "input": "hi"},
    "metadata key": lambda m: {"metadata": {m: "1"}, "input": "hi"},
    "tool schema property": lambda m: {
        "input": "hi",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {m: {}}}}],
    },
}
PLACES = {
    "/v1/chat/completions": CHAT_PLACES,
    "/v1/messages": MESSAGES_PLACES,
    "/v1/responses": RESPONSES_PLACES,
}
# (path, model, stream): chat, cascades (held when streamed), messages and responses, each plain and streamed
ENDPOINT_MODELS = [
    ("/v1/chat/completions", "ladder-0"),
    ("/v1/chat/completions", "ladder-cascade"),
    ("/v1/messages", "ladder-0"),
    ("/v1/responses", "ladder-0"),
]
MODES = [(path, model, stream) for path, model in ENDPOINT_MODELS for stream in (False, True)]


def request(mode: tuple[str, str, bool], place: str, marker: str) -> tuple[str, dict[str, Any]]:
    path, model, stream = mode
    body = {"model": model, "stream": stream, **PLACES[path][place](marker)}
    if path != "/v1/responses":
        body["max_tokens"] = 16
    return path, body


def attack(gateway: Running, stubs: Stubs, path: str, body: dict[str, Any]) -> httpx.Response:
    stubs.clear()
    response = post(gateway.url, path, body)
    settled(gateway.shadow)
    return response


ALL_PLACES = [(m, p) for m in MODES for p in PLACES[m[0]]]
CASES = [
    pytest.param(
        mode, place, name, id=f"{mode[0]}-{mode[1]}-{'stream' if mode[2] else 'plain'}-{place}-{name}"
    )
    for i, (mode, place) in enumerate(ALL_PLACES)
    for name in [list(DISGUISES)[i % len(DISGUISES)]]
]


@pytest.mark.parametrize(("mode", "place", "disguise"), CASES)
def test_a_disguised_marker_never_reaches_a_cloud_model(
    gateway: Running,
    stubs: tuple[Stubs, ServerThread],
    mode: tuple[str, str, bool],
    place: str,
    disguise: str,
) -> None:
    path, body = request(mode, place, DISGUISES[disguise])
    response = attack(gateway, stubs[0], path, body)
    assert response.status_code == 200, response.text
    assert stubs[0].leaks() == [] and stubs[0].cloud_calls() == 0
    assert len(stubs[0].calls(ON_PREM)) >= 1  # it was answered, on-prem


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{m[0]}-{m[1]}-{'stream' if m[2] else 'plain'}")
def test_without_the_marker_the_same_requests_reach_the_cloud(
    gateway: Running, stubs: tuple[Stubs, ServerThread], mode: tuple[str, str, bool]
) -> None:
    """The stubs can see a leak: the cloud is called (shadow judging included) and the detector reads the
    disguised marker that a cloud model would have received."""
    path, body = request(mode, next(iter(PLACES[mode[0]])), "the weather")
    attack(gateway, stubs[0], path, body)
    assert stubs[0].cloud_calls() >= 1
    for disguise in DISGUISES.values():
        assert carries_marker(json.dumps({"messages": [{"content": disguise}]}).encode())
        assert carries_marker(json.dumps({"metadata": {disguise: 1}}, ensure_ascii=False).encode())


def test_generated_disguises_anywhere_stay_on_prem(
    gateway: Running, stubs: tuple[Stubs, ServerThread]
) -> None:
    cases = st.sampled_from(ALL_PLACES)

    @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases, marker=disguised())
    def check(case: tuple[tuple[str, str, bool], str], marker: str) -> None:
        path, body = request(case[0], case[1], marker)
        response = attack(gateway, stubs[0], path, body)
        assert response.status_code == 200, response.text
        assert stubs[0].leaks() == [] and stubs[0].cloud_calls() == 0, (case, marker)

    check()


def test_nothing_sensitive_is_stored(gateway: Running, stubs: tuple[Stubs, ServerThread]) -> None:
    """With audit_prompts on, a sensitive prompt is in neither the audit log nor the traffic database;
    an ordinary one is (so the check can fail)."""
    for marker in DISGUISES.values():
        attack(gateway, stubs[0], "/v1/chat/completions", request(MODES[0], "system message", marker)[1])
    attack(gateway, stubs[0], "/v1/chat/completions", request(MODES[0], "system message", "Paris")[1])

    def stored() -> str:
        with sqlite3.connect(gateway.traffic) as db:
            return "\n".join(db.iterdump())

    deadline = time.monotonic() + 30
    while "About Paris" not in gateway.audit.read_text(encoding="utf-8") or "About Paris" not in stored():
        assert time.monotonic() < deadline, "the ordinary prompt was never stored"
        time.sleep(0.02)
    for text in (gateway.audit.read_text(encoding="utf-8"), stored()):
        assert read_as_a_person(MARKER) not in read_as_a_person(text)
    lines = [json.loads(line) for line in gateway.audit.read_text(encoding="utf-8").splitlines()]
    sensitive = [line for line in lines if line.get("sensitive")]
    assert sensitive and all("prompt" not in line for line in sensitive)
    assert {line["sensitive_because"] for line in sensitive} == {"pattern"}


def test_an_on_prem_only_key_keeps_every_request_on_prem(
    pool: tuple[Path, Router],
    stubs: tuple[Stubs, ServerThread],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For tenants whose data cannot be scanned (images, audio, encoded payloads): the key decides."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    private = "private-key-0123456789"
    profiles = [{"name": "vault", "key": private, "on_prem_only": True}]
    running, server = start(pool, tmp_path, key_profiles=profiles)
    try:
        body = {
            "model": "ladder-0",
            "messages": [{"role": "user", "content": "What is the capital of Peru?"}],
        }
        for key, expected in ((API_KEY, "vision-pro"), (private, ON_PREM)):
            stubs[0].clear()
            reply = httpx.post(
                f"{running.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            settled(running.shadow)
            assert reply.status_code == 200 and reply.headers["x-ladder-model"] == expected
        assert stubs[0].cloud_calls() == 0
        pinned = httpx.post(
            f"{running.url}/v1/chat/completions",
            json={**body, "model": "mid-cloud"},
            headers={"authorization": f"Bearer {private}"},
        )
        assert pinned.status_code == 400 and pinned.json()["error"]["code"] == "no_eligible_model"
        assert stubs[0].cloud_calls() == 0
    finally:
        server.stop()
