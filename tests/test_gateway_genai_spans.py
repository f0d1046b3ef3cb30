"""Spans in OpenTelemetry's GenAI semantic conventions, with the routing decision as attributes.

The request's server span carries ``gen_ai.*`` (operation, requested and answering model, provider, request
parameters, usage, finish reasons, conversation id) and ``ladder.*`` (every P(correct) and expected cost,
the threshold, the reason, the session), so Tempo, Langfuse and Phoenix show them as they are. They are
checked in memory and after a real OTLP/HTTP export to a receiver on loopback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest
from gateway_support.common import API_KEY, RunningGateway
from gateway_support.pool import NAMES
from gateway_support.upstream import FakeUpstream
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ladder.bench.server_thread import ServerThread
from ladder.gateway.tracing import provider_name

pytest_plugins = ["gateway_support.fixtures"]

MESSAGES = [{"role": "user", "content": "Summarise the quarterly report"}]


@pytest.fixture()
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def traced(start_gateway: Callable[..., RunningGateway], exporter: Any, **settings: Any) -> RunningGateway:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return start_gateway(tracer_provider=provider, **settings)


def eventually(find: Callable[[], Any], deadline_s: float = 10.0) -> Any:
    """What ``find`` returns once it is not None: the server span ends just after the response is sent."""
    deadline = time.monotonic() + deadline_s
    while (found := find()) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert found is not None, "the span never arrived"
    return found


def server_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    def find() -> ReadableSpan | None:
        spans = [s for s in exporter.get_finished_spans() if s.name == name]
        return spans[-1] if spans else None

    span: ReadableSpan = eventually(find)
    return span


def test_a_chat_completion_span_follows_the_genai_conventions(
    start_gateway: Callable[..., RunningGateway], exporter: InMemorySpanExporter, upstream: FakeUpstream
) -> None:
    gateway = traced(start_gateway, exporter)
    client = gateway.openai(default_headers={"x-ladder-session-id": "report-1"})
    reply = client.chat.completions.create(
        model="ladder", messages=MESSAGES, max_tokens=64, temperature=0.3, top_p=0.9, stop=["\n\n"], seed=7
    )
    attributes = dict(server_span(exporter, "POST /v1/chat/completions").attributes or {})
    ladder = reply.model_extra["ladder"]  # type: ignore[index]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "ladder"  # what the client asked for
    assert attributes["gen_ai.response.model"] == "upstream-vision-pro"  # the provider's id, as it is priced
    assert attributes["ladder.model"] == reply.model == "vision-pro"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "127.0.0.1"
    assert attributes["gen_ai.request.max_tokens"] == 64 and attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.request.temperature"] == 0.3 and attributes["gen_ai.request.top_p"] == 0.9
    assert "gen_ai.request.stop_sequences" not in attributes  # a client string: kept out of traces
    assert attributes["gen_ai.usage.input_tokens"] == 10 and attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.response.id"] == "chatcmpl-fake"
    for name in NAMES:
        assert attributes[f"ladder.p_correct.{name}"] == pytest.approx(ladder["p_correct"][name], abs=1e-6)
        assert attributes[f"ladder.expected_cost_usd.{name}"] == ladder["expected_costs_usd"][name]
    assert attributes["ladder.decision.threshold"] == ladder["threshold"]
    assert attributes["ladder.decision.tolerance"] == ladder["tolerance"]
    assert attributes["ladder.decision.reason"] == ladder["reason"]
    assert attributes["ladder.decision.policy"] == ladder["policy"]
    assert attributes["ladder.request_id"] == ladder["request_id"]
    assert attributes["ladder.session.status"] == "new" and attributes["ladder.session.kept"] is False
    assert attributes["gen_ai.conversation.id"] == ladder["session"]["id"]

    exporter.clear()
    turn = [*MESSAGES, {"role": "assistant", "content": "Done"}, {"role": "user", "content": "Shorter?"}]
    with client.chat.completions.create(model="ladder", messages=turn, stream=True) as stream:
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "vision-pro says hi"
    attributes = dict(server_span(exporter, "POST /v1/chat/completions").attributes or {})
    assert attributes["ladder.session.status"] == "kept" and attributes["ladder.session.kept"] is True
    assert str(attributes["ladder.decision.reason"]).startswith("kept for session")
    assert attributes["gen_ai.usage.input_tokens"] == 10 and attributes["gen_ai.usage.output_tokens"] == 3
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)  # read from the streamed chunks


def test_excluded_models_and_anthropic_requests_are_described_too(
    start_gateway: Callable[..., RunningGateway], exporter: InMemorySpanExporter, upstream: FakeUpstream
) -> None:
    gateway = traced(start_gateway, exporter)
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=API_KEY, max_retries=0)
    message = claude.messages.create(
        model="ladder",
        max_tokens=128,
        extra_body={"temperature": 0.5},  # this SDK version no longer takes it as an argument
        messages=[{"role": "user", "content": "Internal only"}],
        extra_headers={"x-ladder-sensitive": "true"},
    )
    assert message.model == "small-local"
    attributes = dict(server_span(exporter, "POST /v1/messages").attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.request.model"] == "ladder"
    assert attributes["gen_ai.request.max_tokens"] == 128 and attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.response.model"] == "upstream-small-local"
    assert attributes["ladder.excluded.vision-pro"] == "the request is sensitive: on-prem models only"
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)


def test_provider_names_are_the_conventions_well_known_values() -> None:
    assert provider_name("https://api.openai.com/v1") == "openai"
    assert provider_name("https://generativelanguage.googleapis.com/v1beta/openai/") == "gcp.gemini"
    assert provider_name("https://api.mistral.ai/v1") == "mistral_ai"
    assert provider_name("https://bedrock-runtime.us-east-1.amazonaws.com") == "aws.bedrock"
    assert provider_name("http://llama.internal:8080/v1") == "llama.internal"


class OtlpAttributes:
    """An OTLP/HTTP receiver on loopback that decodes each span's name and attributes."""

    def __init__(self) -> None:
        self.spans: dict[str, dict[str, Any]] = {}
        self.app = Starlette(routes=[Route("/v1/traces", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans[span.name] = {a.key: self._value(a.value) for a in span.attributes}
        return Response(b"", media_type="application/x-protobuf")

    @staticmethod
    def _value(value: Any) -> Any:
        kind = value.WhichOneof("value")
        if kind == "array_value":
            return [OtlpAttributes._value(v) for v in value.array_value.values]
        return getattr(value, kind)


@pytest.fixture()
def otlp() -> Iterator[tuple[OtlpAttributes, str]]:
    pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    receiver = OtlpAttributes()
    with ServerThread(receiver.app) as server:
        yield receiver, server.url


def test_the_attributes_arrive_at_an_otlp_receiver(
    start_gateway: Callable[..., RunningGateway],
    upstream: FakeUpstream,
    otlp: tuple[OtlpAttributes, str],
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    receiver, url = otlp
    gateway = traced(start_gateway, OTLPSpanExporter(endpoint=f"{url}/v1/traces"))
    gateway.openai().chat.completions.create(model="ladder-1", messages=MESSAGES, max_tokens=32)
    received = eventually(lambda: receiver.spans.get("POST /v1/chat/completions"))
    assert received["gen_ai.operation.name"] == "chat"
    assert received["gen_ai.response.model"] == "upstream-small-local"
    assert received["gen_ai.usage.input_tokens"] == 10 and received["gen_ai.response.finish_reasons"] == [
        "stop"
    ]
    assert {f"ladder.p_correct.{n}" for n in NAMES} <= set(received)
    assert received["ladder.decision.reason"].startswith("cheapest of")
