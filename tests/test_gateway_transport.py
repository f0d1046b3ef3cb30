"""The upstream transports (aiohttp's and httpx's pools): HTTPS, private CAs, proxies, bent HTTP."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from gateway_support.common import AUTH, RunningGateway
from gateway_support.proxy import ConnectProxy
from gateway_support.upstream import FakeUpstream, fake_upstream_app

from ladder.bench.faulty_upstream import RawUpstream
from ladder.bench.server_thread import ServerThread

pytest_plugins = ["gateway_support.fixtures", "gateway_support.elsewhere"]

USER = [{"role": "user", "content": "Summarise the plot of Hamlet."}]
TlsUpstream = tuple[FakeUpstream, ServerThread, Path]  # the fake upstream over HTTPS, its server, its CA's PEM file
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(params=["aiohttp", "httpx"])
def gateway_via(
    request: pytest.FixtureRequest, gateway_at: Callable[..., RunningGateway]
) -> Callable[..., RunningGateway]:
    """``gateway_at`` with each upstream connection pool (``upstream_http``)."""
    return functools.partial(gateway_at, upstream_http=request.param)


def chat(gateway: RunningGateway, stream: bool = False, model: str = "ladder-0") -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers=AUTH,
        json={"model": model, "messages": USER, "stream": stream},
        timeout=30,
        trust_env=False,  # the test's own client never goes through the proxy under test
    )


def stream_events(response: httpx.Response) -> list[str]:
    return [e.removeprefix("data: ") for e in response.text.split("\n\n") if e.startswith("data: ")]


def streamed_text(response: httpx.Response) -> str:
    text = ""
    for data in stream_events(response):
        if data != "[DONE]":
            for choice in json.loads(data).get("choices") or ():
                text += choice["delta"].get("content") or ""
    return text


@pytest.fixture(scope="session")
def tls_upstream(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TlsUpstream]:
    """The fake upstream over HTTPS, its certificate issued by a CA made here; yields the CA's PEM file."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    key_pem.write_bytes(cert.private_key_pem.bytes())
    state = FakeUpstream()
    with ServerThread(
        fake_upstream_app(state), ssl_certfile=str(cert_pem), ssl_keyfile=str(key_pem)
    ) as server:
        yield state, server, ca_pem


def tunnels(proxy: ConnectProxy) -> list[str]:
    """The tunnels to loopback (other libraries in this process may use the proxy for their own calls)."""
    return [t for t in proxy.tunnels if t.startswith("127.0.0.1:")]


@pytest.fixture()
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture()
def tls(tls_upstream: TlsUpstream, no_proxy_env: pytest.MonkeyPatch) -> TlsUpstream:
    """The HTTPS upstream, reset, with no proxy in this process's environment."""
    tls_upstream[0].reset()
    return tls_upstream


def test_an_https_upstream_with_a_private_ca(tls: TlsUpstream, gateway_via: Callable[..., RunningGateway]) -> None:
    state, server, ca_pem = tls
    response = chat(gateway_via(server.url, upstream_ca_bundle=str(ca_pem)))
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "vision-pro"
    assert state.count("vision-pro") == 1


def test_an_https_upstream_whose_ca_is_not_trusted_is_a_clean_502(
    tls: TlsUpstream, gateway_via: Callable[..., RunningGateway]
) -> None:
    state, server, _ = tls
    response = chat(gateway_via(server.url))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_failure"
    assert "ConnectError" in response.json()["error"]["message"]
    assert state.seen == []  # certificate verification failed before any request was sent


def test_https_proxy_is_honoured_and_no_proxy_bypasses_it(
    tls: TlsUpstream, gateway_via: Callable[..., RunningGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, server, ca_pem = tls
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        response = chat(gateway_via(server.url, upstream_ca_bundle=str(ca_pem)))
        assert response.status_code == 200, response.text
        assert tunnels(proxy) == [f"127.0.0.1:{server.port}"]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert chat(gateway_via(server.url, upstream_ca_bundle=str(ca_pem))).status_code == 200
        assert tunnels(proxy) == [f"127.0.0.1:{server.port}"]  # not through the proxy this time
    assert state.count("vision-pro") == 2


def test_a_100_continue_before_the_answer_is_skipped(
    raw: RawUpstream, gateway_via: Callable[..., RunningGateway]
) -> None:
    raw.script("vision-pro", "continue", "continue", "ok")
    gateway = gateway_via(raw.url)
    answers = [chat(gateway).json() for _ in range(3)]  # the connection stays in step after each
    assert [a["choices"][0]["message"]["content"] for a in answers] == ["upstream-vision-pro says hi"] * 3
    assert raw.count("vision-pro") == 3


def test_a_body_ended_by_closing_the_connection(
    raw: RawUpstream, gateway_via: Callable[..., RunningGateway]
) -> None:
    raw.script("vision-pro", "close", "close")
    gateway = gateway_via(raw.url)
    for _ in range(2):
        response = chat(gateway)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "upstream-vision-pro says hi"


def test_a_reset_on_a_kept_alive_connection_is_never_resent(
    raw: RawUpstream, gateway_via: Callable[..., RunningGateway]
) -> None:
    raw.script("vision-pro", "ok", "reset")
    gateway = gateway_via(raw.url, retries=2, breaker_failures=10)
    assert chat(gateway).json()["model"] == "vision-pro"  # leaves a kept-alive connection
    response = chat(gateway)  # written on that connection, which the upstream then resets
    assert response.status_code == 200
    assert response.json()["model"] == "mid-cloud"
    assert response.headers["x-ladder-fallback"].startswith("vision-pro (")
    assert raw.count("vision-pro") == 2  # the reset request reached it once, and only once


def test_a_stream_reset_mid_way_ends_with_an_error_event_and_is_not_resent(
    raw: RawUpstream, gateway_via: Callable[..., RunningGateway]
) -> None:
    raw.script("vision-pro", "reset-stream")
    response = chat(gateway_via(raw.url, retries=2), stream=True)
    events = stream_events(response)
    assert json.loads(events[0])["model"] == "vision-pro"
    assert "error" in json.loads(events[-1]) and "[DONE]" not in events
    assert raw.count("vision-pro") == 1 and raw.count("mid-cloud") == 0


def test_sse_with_crlf_split_across_reads(
    raw: RawUpstream, gateway_via: Callable[..., RunningGateway]
) -> None:
    raw.script("vision-pro", "crlf")
    response = chat(gateway_via(raw.url), stream=True)
    assert response.status_code == 200
    assert streamed_text(response) == "upstream-vision-pro says hi"  # the raw fake names the upstream id
    assert stream_events(response)[-1] == "[DONE]"


def test_a_refused_connection_may_be_retried_on_the_same_model(
    gateway_via: Callable[..., RunningGateway],
) -> None:
    gateway = gateway_via("http://127.0.0.1:9", retries=1, deadline_s=5)  # the discard port: refused
    response = chat(gateway)
    assert response.status_code == 502
    attempts = response.json()["error"]["message"]
    assert attempts.count("vision-pro: ConnectError") == 2  # nothing was sent, so it was tried again
