"""Shadow judging on a real gateway: sampled answers are re-asked to a reference model and graded by a judge
model (a loopback server returning JSON verdicts), in the background, within a budget."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gateway_support.common import API_KEY, AUTH, UPSTREAM_KEY, UPSTREAM_KEY_ENV
from gateway_support.pool import pool_data
from gateway_support.upstream import FakeUpstream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ladder.bench.server_thread import ServerThread
from ladder.core.errors import ConfigError
from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.core.traffic_db import TrafficDB
from ladder.gateway.app import create_app
from ladder.gateway.settings import load_settings

pytest_plugins = ["gateway_support.fixtures"]

ANSWER = re.compile(r"Answer (\d):\n<<<\n(.*?)\n>>>", re.S)


@dataclass
class Judge:
    """A judge model on loopback: the answer written by vision-pro is right, any other wrong."""

    mode: str = "ok"  # ok | malformed | hold
    release: threading.Event = field(default_factory=threading.Event)
    seen: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def complete(request: Request) -> JSONResponse:
            body = await request.json()
            answers = dict(ANSWER.findall(body["messages"][-1]["content"]))
            self.seen.append(answers)
            if self.mode == "hold":
                await asyncio.to_thread(self.release.wait, 30)
            verdict = {f"answer_{k}": int("vision-pro" in v) for k, v in answers.items()}
            content = "both look fine to me" if self.mode == "malformed" else f"```json\n{verdict}\n```"
            content = content.replace("'", '"')
            usage = {"prompt_tokens": 200, "completion_tokens": 10, "total_tokens": 210}
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
            return JSONResponse({"id": "j", "object": "chat.completion", "choices": [choice], "usage": usage})

        return Starlette(routes=[Route("/judge/v1/chat/completions", complete, methods=["POST"])])


@pytest.fixture(scope="module")
def judge_server() -> Iterator[tuple[Judge, ServerThread]]:
    judge = Judge()
    with ServerThread(judge.app()) as server:
        yield judge, server


@pytest.fixture(scope="module")
def shadow_pool(
    tmp_path_factory: pytest.TempPathFactory,
    test_pool: Path,
    upstream_server: tuple[FakeUpstream, ServerThread],
    judge_server: tuple[Judge, ServerThread],
) -> tuple[Path, Router]:
    data = pool_data(upstream_server[1].url, test_pool.parent / "checkpoint", UPSTREAM_KEY_ENV)
    data["models"].append(
        {
            "name": "judge",
            "label": "small-local",  # scored as small-local: the checkpoint knows no "judge"
            "upstream": {"base_url": f"{judge_server[1].url}/judge/v1", "model": "judge-1"},
            "price": {"input_per_1m": 1.0, "output_per_1m": 1.0},
            "context_window": 32768,
        }
    )
    path = tmp_path_factory.mktemp("shadow") / "pool.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path, Router.from_pool(load_pool(path))


@pytest.fixture()
def start(
    shadow_pool: tuple[Path, Router],
    judge_server: tuple[Judge, ServerThread],
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., tuple[str, Any]]]:
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    judge = judge_server[0]
    judge.mode, judge.seen = "ok", []
    judge.release.clear()
    servers: list[ServerThread] = []

    def run(**shadow: Any) -> tuple[str, Any]:
        settings = load_settings(
            None,
            pool=shadow_pool[0],
            api_keys=[API_KEY],
            traffic_db=str(tmp_path / "traffic.db"),
            shadow={
                "share": 1.0,
                "reference_model": "vision-pro",
                "judge_model": "judge",
                "seed": 3,
                **shadow,
            },
            retries=0,
        )
        app = create_app(settings, router=shadow_pool[1])
        servers.append(ServerThread(app).start())
        return servers[-1].url, app.state.gateway.shadow

    yield run
    judge.release.set()
    for server in servers:
        server.stop()


def ask(url: str, n: int = 1) -> list[str]:
    ids = []
    for i in range(n):
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            headers=AUTH,
            json={"model": "mid-cloud", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}]},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        ids.append(reply.headers["x-ladder-request-id"])
    return ids


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll for a background effect (the test asserts the end state, never how long it took)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def outcomes(db: Path) -> list[Any]:
    store = TrafficDB(db, create=False)
    try:
        return list(store.iter_outcomes())
    finally:
        store.close()


def test_sampled_answers_are_judged_against_the_reference(
    start: Callable[..., tuple[str, Any]], judge_server: tuple[Judge, ServerThread], upstream: FakeUpstream,
    tmp_path: Path,
) -> None:  # fmt: skip
    url, shadow = start()
    ids = ask(url, 6)
    wait_for(lambda: shadow.counts["judged"] == 6, "six verdicts")
    found = outcomes(tmp_path / "traffic.db")
    assert {(o.request_id, o.model, o.label, o.source) for o in found} == {
        (i, m, label, "shadow:judge") for i in ids for m, label in (("mid-cloud", 0.0), ("vision-pro", 1.0))
    }
    assert upstream.count("vision-pro") == 6  # the reference was asked once per sampled request
    # the routed answer was shown first and second: the verdict follows it either way
    positions = {k for answers in judge_server[0].seen for k, v in answers.items() if "vision-pro" in v}
    assert positions == {"1", "2"}
    assert shadow.spent_usd > 0


def test_judging_never_holds_up_the_client(
    start: Callable[..., tuple[str, Any]], judge_server: tuple[Judge, ServerThread], tmp_path: Path
) -> None:
    judge = judge_server[0]
    judge.mode = "hold"
    url, shadow = start()
    ask(url, 2)  # answered while the judge is still holding the first verdict
    wait_for(lambda: len(judge.seen) == 2, "both judge calls")
    assert shadow.counts["judged"] == 0 and outcomes(tmp_path / "traffic.db") == []
    judge.release.set()
    wait_for(lambda: shadow.counts["judged"] == 2, "the released verdicts")


def test_budget_and_concurrency_limits_skip_instead_of_queueing(
    start: Callable[..., tuple[str, Any]], judge_server: tuple[Judge, ServerThread]
) -> None:
    url, shadow = start(budget_usd=1e-9)
    ask(url, 1)
    wait_for(lambda: shadow.counts["judged"] == 1, "the first verdict")
    ask(url, 3)
    assert shadow.counts["skipped: budget spent"] == 3 and len(judge_server[0].seen) == 1

    judge_server[0].mode = "hold"
    url, shadow = start(max_in_flight=1)
    ask(url, 3)
    assert shadow.counts["skipped: too many in flight"] == 2


def test_a_malformed_verdict_is_retried_then_left_unknown(
    start: Callable[..., tuple[str, Any]], judge_server: tuple[Judge, ServerThread], tmp_path: Path
) -> None:
    judge_server[0].mode = "malformed"
    url, shadow = start(judge_retries=1)
    ask(url, 1)
    wait_for(lambda: shadow.counts["malformed verdict"] == 1, "the verdict to be given up on")
    assert len(judge_server[0].seen) == 2 and outcomes(tmp_path / "traffic.db") == []


def test_shadow_settings_are_checked(shadow_pool: tuple[Path, Router], tmp_path: Path) -> None:
    base: dict[str, Any] = {"pool": shadow_pool[0], "api_keys": [API_KEY]}
    on = {"share": 0.1, "reference_model": "vision-pro", "judge_model": "judge"}
    with pytest.raises(ConfigError, match="traffic_db"):
        load_settings(None, **base, shadow=on)
    with pytest.raises(ConfigError, match="must differ"):
        load_settings(
            None, **base, traffic_db=str(tmp_path / "t.db"), shadow={**on, "judge_model": "vision-pro"}
        )
    with pytest.raises(ConfigError, match="reference_model"):
        load_settings(None, **base, traffic_db=str(tmp_path / "t.db"), shadow={"share": 0.5})
    settings = load_settings(
        None, **base, traffic_db=str(tmp_path / "t.db"), shadow={**on, "judge_model": "gpt-9"}
    )
    with pytest.raises(ConfigError, match="'gpt-9' is not a pool model"):
        create_app(settings, router=shadow_pool[1])


def test_a_sensitive_request_is_not_judged_by_cloud_models(
    start: Callable[..., tuple[str, Any]], judge_server: tuple[Judge, ServerThread], upstream: FakeUpstream
) -> None:
    """Answered on-prem, a sensitive request is never re-asked to a cloud reference nor shown to a cloud
    judge: it is skipped (judged only where both are on-prem)."""
    url, shadow = start()
    body = {"model": "small-local", "messages": [{"role": "user", "content": "Our Q3 numbers, please."}]}
    headers = {**AUTH, "x-ladder-sensitive": "true"}
    reply = httpx.post(f"{url}/v1/chat/completions", headers=headers, json=body, timeout=30)
    assert reply.status_code == 200 and reply.headers["x-ladder-model"] == "small-local"
    assert shadow.counts["skipped: sensitive request (reference or judge not on-prem)"] == 1
    ask(url, 1)  # an ordinary request still is
    wait_for(lambda: shadow.counts["judged"] == 1, "the ordinary request's verdict")
    assert upstream.count("vision-pro") == 1 and len(judge_server[0].seen) == 1
