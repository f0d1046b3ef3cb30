"""OpenTelemetry spans for the request, scoring, policy and upstream call; W3C context in and out."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gateway_support.common import RunningGateway
from gateway_support.upstream import FakeUpstream
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ladder.gateway.tracing import provider_from_env, tracing_configured

pytest_plugins = ["gateway_support.fixtures"]

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_PARENT = "00f067aa0ba902b7"


@pytest.fixture()
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def traced_gateway(
    start_gateway: Callable[..., RunningGateway], exporter: InMemorySpanExporter
) -> RunningGateway:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return start_gateway(tracer_provider=provider)


def test_spans_cover_request_scoring_policy_and_upstream(
    start_gateway: Callable[..., RunningGateway], exporter: InMemorySpanExporter, upstream: FakeUpstream
) -> None:
    gateway = traced_gateway(start_gateway, exporter)
    gateway.openai().chat.completions.create(
        model="ladder",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_PARENT}-01"},
    )
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert {"POST /v1/chat/completions", "ladder.score", "ladder.core.policy", "ladder.core.upstream"} <= set(spans)
    request = spans["POST /v1/chat/completions"]
    assert request.kind is SpanKind.SERVER
    assert request.parent is not None and format(request.parent.span_id, "016x") == CALLER_PARENT
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {CALLER_TRACE}
    for child in ("ladder.score", "ladder.core.policy", "ladder.core.upstream"):
        assert spans[child].parent is not None and spans[child].parent.span_id == request.context.span_id
    call = spans["ladder.core.upstream"]
    assert call.kind is SpanKind.CLIENT and call.attributes["http.response.status_code"] == 200  # type: ignore[index]
    assert request.attributes["http.response.status_code"] == 200  # type: ignore[index]
    traceparent = upstream.seen[-1].headers["traceparent"]
    assert traceparent == f"00-{CALLER_TRACE}-{format(call.context.span_id, '016x')}-01"


def test_failed_upstream_attempts_are_error_spans(
    start_gateway: Callable[..., RunningGateway], exporter: InMemorySpanExporter, upstream: FakeUpstream
) -> None:
    gateway = traced_gateway(start_gateway, exporter)
    upstream.set("vision-pro", "fail")
    gateway.openai().chat.completions.create(model="ladder-0", messages=[{"role": "user", "content": "hi"}])
    calls = [s for s in exporter.get_finished_spans() if s.name == "ladder.core.upstream"]
    assert [s.attributes["ladder.model"] for s in calls] == ["vision-pro", "mid-cloud"]  # type: ignore[index]
    assert not calls[0].status.is_ok and calls[1].status.is_unset


def test_exporter_comes_from_the_standard_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing_configured() and provider_from_env() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    provider = provider_from_env()
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "gateway-under-test"  # type: ignore[attr-defined]
    provider.shutdown()  # type: ignore[attr-defined]
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert provider_from_env() is None
