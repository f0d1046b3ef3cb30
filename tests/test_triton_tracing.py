"""Gateway-side and Triton spans share one trace id at a real OTLP/HTTP receiver (protobuf and JSON)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import triton_helpers as th

from ladder.core.loopback import free_port
from ladder.gateway.triton_scorer import TritonScorer, TritonScorerSettings

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class OtlpReceiver:
    """An OTLP/HTTP trace endpoint (``POST /v1/traces``, protobuf) that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, str, str]] = []  # service, name, trace id, span id, parent id
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceRequest,
                    ExportTraceServiceResponse,
                )

                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if "json" in self.headers.get("Content-Type", ""):  # Triton's C++ exporter sends OTLP/JSON
                    receiver.add_json(json.loads(body))
                else:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver.add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[OtlpReceiver]:
        """A started receiver, shut down on exit (skips when the OTLP protobuf classes are missing)."""
        pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
        receiver = cls()
        receiver.thread.start()
        try:
            yield receiver
        finally:
            receiver.server.shutdown()
            receiver.server.server_close()

    def add(self, request: object) -> None:
        for resource_spans in request.resource_spans:  # type: ignore[attr-defined]
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        (attrs.get("service.name", ""), span.name, span.trace_id.hex(), span.span_id.hex(),
                         span.parent_span_id.hex())
                    )  # fmt: skip

    def add_json(self, request: dict[str, Any]) -> None:
        """OTLP/JSON: the same structure in camelCase, ids as hex strings."""
        for resource_spans in request.get("resourceSpans", []):
            attributes = resource_spans.get("resource", {}).get("attributes", [])
            attrs = {a["key"]: a["value"].get("stringValue", "") for a in attributes}
            for scope in resource_spans.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    self.spans.append(
                        (attrs.get("service.name", ""), span["name"], span["traceId"].lower(),
                         span["spanId"].lower(), span.get("parentSpanId", "").lower())
                    )  # fmt: skip

    def wait_for(
        self, trace_id: str, services: set[str], timeout: float, parent: str | None = None
    ) -> set[str]:
        """Services seen in the trace once all of ``services`` have sent spans (and, given ``parent``,
        one span hangs off that span id); Triton exports a request's spans in more than one batch."""
        deadline = time.monotonic() + timeout
        while True:
            spans = [s for s in self.spans if s[2] == trace_id]
            seen = {s[0] for s in spans}
            parented = parent is None or any(s[4] == parent for s in spans)
            if (services <= seen and parented) or time.monotonic() >= deadline:
                return seen
            time.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver.running() as rx:
        yield rx


@pytest.mark.asyncio
async def test_gateway_and_triton_spans_share_one_trace(receiver: OtlpReceiver, tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    endpoint = f"127.0.0.1:{receiver.port}/v1/traces"
    trace_config = [
        "rate=1", "level=TIMESTAMPS", f"opentelemetry,url={endpoint}",
        "opentelemetry,resource=service.name=triton", "opentelemetry,bsp_schedule_delay=100",
    ]  # fmt: skip
    server = th.server_or_skip(
        th.cpu_repository(), trace_config=trace_config, log_path=tmp_path / "triton.log"
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "ladder-gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://{endpoint}")))
    tracer = provider.get_tracer("ladder.gateway")
    scorer = TritonScorer(th.LABELS, TritonScorerSettings(url=server.grpc_url, on_unavailable="error"))
    try:
        await scorer.start()
        encoded = th.tokenizer().encode([th.PROMPTS["english"]])
        with tracer.start_as_current_span("route") as span:
            await scorer.score_ids_async(encoded.input_ids, encoded.attention_mask)
            trace_id = format(span.get_span_context().trace_id, "032x")
            gateway_span = format(span.get_span_context().span_id, "016x")
        assert scorer.counts["triton"] == 1
        seen = receiver.wait_for(trace_id, {"ladder-gateway", "triton"}, timeout=20, parent=gateway_span)
        assert seen >= {"ladder-gateway", "triton"}, f"spans of trace {trace_id}: {receiver.spans}"
        triton_spans = [s for s in receiver.spans if s[0] == "triton" and s[2] == trace_id]
        assert any(s[4] == gateway_span for s in triton_spans), triton_spans  # Triton's root hangs off ours
    finally:
        await scorer.close()
        server.stop()
        provider.shutdown()
