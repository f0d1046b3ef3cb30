"""``POST /v1/feedback`` on a real gateway: outcomes stored with their decision, bad input answered 4xx."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support.common import API_KEY, AUTH, UPSTREAM_KEY, UPSTREAM_KEY_ENV, RunningGateway
from gateway_support.upstream import FakeUpstream

from ladder.bench.server_thread import ServerThread
from ladder.core.router import Router
from ladder.core.traffic_db import TrafficDB
from ladder.gateway.app import create_app
from ladder.gateway.settings import load_settings

pytest_plugins = ["gateway_support.fixtures"]



def post(gateway: RunningGateway, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, str | bytes) else {"json": body}
    return httpx.post(f"{gateway.url}/v1/feedback", headers=AUTH if headers is None else headers, **kwargs)


@pytest.fixture()
def fed(start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> tuple[RunningGateway, Path]:
    db = tmp_path / "traffic.db"
    return start_gateway(traffic_db=str(db), audit_prompts=True), db


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, test_pool: Path, router: Router
) -> Iterator[tuple[RunningGateway, Path]]:
    """One gateway for the tests that only send bad or unknown feedback (nothing they do is stored)."""
    db = tmp_path_factory.mktemp("feedback") / "traffic.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
        settings = load_settings(None, pool=test_pool, api_keys=[API_KEY], traffic_db=str(db))
        app = create_app(settings, router=router)
        with ServerThread(app) as server:
            yield RunningGateway(server.url, app, settings), db


def test_feedback_is_stored_with_the_decision(
    fed: tuple[RunningGateway, Path], upstream: FakeUpstream
) -> None:
    gateway, db = fed
    upstream.set("vision-pro", "fail")  # the decision's first choice fails: the fallback answers
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="ladder-0", messages=[{"role": "user", "content": "What is the capital of Peru?"}]
    )
    request_id = raw.headers["x-ladder-request-id"]
    # reported at once: the decision, written off the event loop, is found all the same
    reply = post(gateway, {"request_id": request_id, "thumbs": "down", "comment": "wrong, mail a@b.io"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "mid-cloud" and reply.json()["label"] == 0.0
    routed = httpx.post(f"{gateway.url}/v1/route", headers=AUTH, json={"prompt": "Name a prime."})
    routed_id = routed.json()["id"]
    assert post(gateway, {"request_id": routed_id, "score": 0.75}).status_code == 200
    gateway.app.state.gateway.traffic.close()
    store = TrafficDB(db, create=False)
    outcomes = {o.request_id: o for o in store.iter_outcomes()}
    assert outcomes[request_id].model == "mid-cloud" and outcomes[request_id].label == 0.0
    assert outcomes[request_id].source == "feedback:thumbs"
    assert outcomes[request_id].comment == "wrong, mail [REDACTED]"
    assert outcomes[routed_id].model == routed.json()["model"]
    assert outcomes[routed_id].label == 0.75
    decision = store.decision(request_id)
    assert decision is not None and decision.prompt == "What is the capital of Peru?"
    assert decision.record.chosen_model == "vision-pro"
    assert decision.record.answered_model == "mid-cloud"
    store.close()


def test_unknown_request_id_is_404(shared: tuple[RunningGateway, Path]) -> None:
    reply = post(shared[0], {"request_id": "never-seen-0001", "thumbs": "up"})
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert error["code"] == "request_not_found" and error["param"] == "request_id"
    assert "never-seen-0001" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"request_id": "abc", "thumbs": "up", "score": 1.0}, None),
        ({"request_id": "abc"}, None),
        ({"request_id": "abc", "score": 1.5}, "score"),
        ({"request_id": "abc", "score": "high"}, "score"),
        ({"request_id": "abc", "thumbs": "meh"}, "thumbs"),
        ({"request_id": "has spaces", "thumbs": "up"}, "request_id"),
        ({"request_id": "abc", "thumbs": "up", "stars": 5}, "stars"),
        ({"thumbs": "up"}, "request_id"),
        ("not json", None),
        ("[1, 2]", None),
        ("", None),
    ],
)
def test_bad_bodies_are_400(shared: tuple[RunningGateway, Path], body: Any, param: str | None) -> None:
    reply = post(shared[0], body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param


def test_nan_score_is_400(shared: tuple[RunningGateway, Path]) -> None:
    reply = post(shared[0], '{"request_id": "abc", "score": NaN}')
    assert reply.status_code == 400


def test_feedback_needs_a_key(shared: tuple[RunningGateway, Path]) -> None:
    assert post(shared[0], {"request_id": "abc", "thumbs": "up"}, headers={}).status_code == 401
    wrong = {"authorization": "Bearer wrong-key-0123456789"}
    assert post(shared[0], {"request_id": "abc", "thumbs": "up"}, headers=wrong).status_code == 401


def test_failed_request_cannot_be_rated(fed: tuple[RunningGateway, Path], upstream: FakeUpstream) -> None:
    gateway, _ = fed
    for name in ("small-local", "mid-cloud", "vision-pro"):
        upstream.set(name, "fail")
    failed = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={**AUTH, "x-request-id": "failed-request-1"},
        json={"model": "ladder", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert failed.status_code == 502
    reply = post(gateway, {"request_id": failed.headers["x-ladder-request-id"], "thumbs": "up"})
    assert reply.status_code == 400 and "nothing to rate" in reply.json()["error"]["message"]


def test_without_a_traffic_db_feedback_is_404(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    reply = post(gateway, {"request_id": "abc", "thumbs": "up"})
    assert reply.status_code == 404 and "traffic_db" in reply.json()["error"]["message"]
