"""The gateway scoring through a real ``tritonserver`` on loopback: same answers, crash survival, 503 mode.

Needs the Triton install (``scripts/install_triton.sh``); the server tests skip with the reason when it is
absent. The Triton repository is a cpu export (int8 encoder, as the test checkpoint routes with) of the
gateway tests' checkpoint. Requests are sent one at a time where answers are compared, so Triton's dynamic
batching never pads a row with a neighbour's (int8 activations are quantised per batch).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import triton_helpers as th
from gateway_support.common import API_KEY, RunningGateway
from test_triton_tracing import OtlpReceiver

from ladder.core.errors import ConfigError
from ladder.core.loopback import free_port
from ladder.core.router import Router
from ladder.export.triton_server import TritonServer
from ladder.gateway.batcher import ScoreBatcher, Scored
from ladder.gateway.triton_scorer import TritonScorer

pytest_plugins = ["gateway_support.fixtures"]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TOLERANCE = 1e-4
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SLOW_S = 10.0  # per-call timeout where Triton must answer: a busy CI machine must not turn into a 503


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver.running() as rx:
        yield rx


@pytest.fixture(scope="module")
def triton(
    router: Router, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """tritonserver on a cpu export of the gateway test checkpoint, tracing to ``receiver``."""
    from ladder.export.triton_repo import export_repository

    pytest.importorskip("tritonclient.grpc.aio", reason="tritonclient is not installed")
    directory = tmp_path_factory.mktemp("gateway-triton")
    repository = directory / "model_repository"
    int8 = router.pool.routing.encoder_variant == "int8"  # the variant the embedded gateway routes with
    export_repository(router.checkpoint.directory, repository, flavour="cpu", int8=int8, log=lambda _: None)
    trace_config = [
        "rate=1", "level=TIMESTAMPS", f"opentelemetry,url=127.0.0.1:{receiver.port}/v1/traces",
        "opentelemetry,resource=service.name=triton", "opentelemetry,bsp_schedule_delay=100",
    ]  # fmt: skip
    server = th.server_or_skip(repository, trace_config=trace_config, log_path=directory / "triton.log")
    yield server
    server.stop()


def _triton_gateway(
    start_gateway: Callable[..., RunningGateway], url: str, **triton: Any
) -> tuple[RunningGateway, TritonScorer]:
    gateway = start_gateway(scorer="triton", triton={"url": url, **triton})
    scorer = gateway.app.state.gateway.triton
    assert isinstance(scorer, TritonScorer)
    return gateway, scorer


def _route(url: str, text: str, **headers: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/route", json={"prompt": text}, headers={**AUTH, **headers}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _readyz(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{url}/readyz", timeout=5)
    return response.status_code, dict(response.json())


def _close(a: dict[str, float], b: dict[str, float]) -> float:
    assert a.keys() == b.keys()
    return max(abs(a[k] - b[k]) for k in a)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_route_and_chat_through_triton_match_the_embedded_gateway(
    start_gateway: Callable[..., RunningGateway], triton: TritonServer, upstream: Any
) -> None:
    embedded = start_gateway()
    gateway, scorer = _triton_gateway(
        start_gateway, triton.grpc_url, timeout_s=SLOW_S, on_unavailable="error"
    )
    status, ready = _readyz(gateway.url)
    assert status == 200 and ready["scorer"]["serving"] == "triton" and ready["scorer"]["triton_up"]
    assert _readyz(embedded.url)[1]["scorer"] == {"backend": "embedded"}

    for name, text in th.PROMPTS.items():
        here, there = _route(embedded.url, text), _route(gateway.url, text)
        assert _close(here["p_correct"], there["p_correct"]) <= TOLERANCE, name
        assert there["routed_model"] == here["routed_model"], name
        assert there["routed_tokens"] == here["routed_tokens"], name
    for text in (th.PROMPTS["english"], th.PROMPTS["chinese"]):
        message = {"role": "user", "content": text}
        first = embedded.openai().chat.completions.create(model="ladder", messages=[message])  # type: ignore[list-item]
        second = gateway.openai().chat.completions.create(model="ladder", messages=[message])  # type: ignore[list-item]
        a, b = first.model_extra["ladder"], second.model_extra["ladder"]  # type: ignore[index]
        assert _close(a["p_correct"], b["p_correct"]) <= TOLERANCE
        assert second.model == first.model and second.choices[0].message.content
    assert scorer.counts["triton"] == len(th.PROMPTS) + 2 and scorer.counts["fallback"] == 0


def test_the_request_traceparent_reaches_triton(
    start_gateway: Callable[..., RunningGateway], triton: TritonServer, receiver: OtlpReceiver
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    gateway = start_gateway(
        scorer="triton",
        triton={"url": triton.grpc_url, "timeout_s": SLOW_S, "on_unavailable": "error"},
        tracer_provider=TracerProvider(),  # the gateway joins the incoming trace (nothing exported)
    )
    _route(gateway.url, th.PROMPTS["code"], traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
    seen = receiver.wait_for(TRACE_ID, {"triton"}, timeout=20)
    assert "triton" in seen, f"no Triton span in trace {TRACE_ID}: {receiver.spans[-10:]}"


def test_triton_crash_mid_traffic_falls_back_then_recovers(
    start_gateway: Callable[..., RunningGateway], triton: TritonServer, router: Router
) -> None:
    """Kill -9 Triton under traffic: every request is answered (embedded fallback), then Triton is back."""
    gateway, scorer = _triton_gateway(
        start_gateway, triton.grpc_url, timeout_s=SLOW_S, health_interval_s=0.2, on_unavailable="embedded"
    )
    texts = [th.PROMPTS["english"], th.PROMPTS["japanese"], th.PROMPTS["code"]]
    expected = [_route(start_gateway().url, text)["p_correct"] for text in texts]
    failures: list[str] = []
    worst = [0.0]
    answered = [0]
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(headers=AUTH, timeout=30) as client:
            while not stop.is_set():
                i = answered[0] % len(texts)
                response = client.post(f"{gateway.url}/v1/route", json={"prompt": texts[i]})
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text}")
                else:
                    worst[0] = max(worst[0], _close(response.json()["p_correct"], expected[i]))
                answered[0] += 1
                time.sleep(0.01)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        _wait(lambda: scorer.counts["triton"] >= 5, 30, "traffic through Triton")
        triton.kill()  # requests in flight
        _wait(lambda: scorer.counts["fallback"] >= 5, 30, "the embedded fallback")
        status, ready = _readyz(gateway.url)
        assert status == 200 and ready["scorer"]["serving"] == "fallback:embedded", ready
        before = scorer.counts["triton"]
        triton.start()  # same ports
        _wait(lambda: _readyz(gateway.url)[1]["scorer"]["triton_up"], 60, "/readyz to report Triton up")
        _wait(lambda: scorer.counts["triton"] >= before + 5, 30, "traffic through Triton again")
    finally:
        stop.set()
        thread.join(timeout=30)
        triton.start()  # for any later test
    assert not failures, failures[:3]
    assert scorer.counts["failures"] >= 1 and scorer.counts["recoveries"] == 1
    assert worst[0] <= TOLERANCE


def test_triton_down_with_error_mode_is_a_503_in_openai_envelope(
    start_gateway: Callable[..., RunningGateway], upstream: Any
) -> None:
    pytest.importorskip("tritonclient.grpc.aio", reason="tritonclient is not installed")
    gateway, scorer = _triton_gateway(
        start_gateway, f"127.0.0.1:{free_port()}", timeout_s=0.5, on_unavailable="error"
    )
    status, ready = _readyz(gateway.url)
    assert status == 503 and ready["status"] == "unavailable"
    assert ready["scorer"]["triton_up"] is False and ready["scorer"]["serving"] == "fallback:error"
    body = {"model": "ladder", "messages": [{"role": "user", "content": "hello"}]}
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and "unavailable" in error["message"]
    assert upstream.seen == [] and scorer.counts["fallback"] >= 1


def test_the_batcher_scores_in_the_request_context() -> None:
    """run_in_executor drops contextvars: the batcher runs the scorer in the (first) request's context."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")
    seen: list[str] = []

    def score(texts: Sequence[str]) -> list[Scored]:
        seen.append(var.get())
        return [Scored(np.zeros(3, np.float32), 1, False) for _ in texts]

    async def main() -> None:
        batcher = ScoreBatcher(score)
        await batcher.start()
        try:

            async def request(name: str) -> None:
                var.set(name)
                await batcher.score(name)

            await asyncio.gather(request("a"), request("b"))
        finally:
            await batcher.close()

    asyncio.run(main())
    assert seen and set(seen) <= {"a", "b"} and "none" not in seen


def test_settings_select_triton_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, test_pool: Path
) -> None:
    from ladder.gateway.settings import load_settings

    monkeypatch.setenv("LADDER_SCORER", "triton")
    monkeypatch.setenv("LADDER_TRITON__URL", "triton.ai.svc:8001")
    monkeypatch.setenv("LADDER_TRITON__ON_UNAVAILABLE", "default_model")
    monkeypatch.setenv("LADDER_TRITON__DEFAULT_MODEL", "small-local")
    settings = load_settings(None, pool=test_pool, auth_disabled=True)
    assert settings.scorer == "triton" and settings.triton.url == "triton.ai.svc:8001"
    assert settings.triton.on_unavailable == "default_model"
    monkeypatch.setenv("LADDER_TRITON__NOPE", "1")
    with pytest.raises(ConfigError, match=r"triton\.nope"):
        load_settings(None, pool=test_pool, auth_disabled=True)
