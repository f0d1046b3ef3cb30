"""OpenTelemetry: a tracer from the standard ``OTEL_*`` variables, W3C context in and out of the gateway."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "ladder.gateway"
_PROPAGATOR = TraceContextTextMapPropagator()


def tracing_configured() -> bool:
    """Whether the environment asks for traces (an OTLP endpoint, or an exporter other than none)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter and exporter != "none":
        return True
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def provider_from_env() -> TracerProvider | None:
    """A provider with the exporter the ``OTEL_*`` variables name (``otlp``, the default, or ``console``)."""
    if not tracing_configured():
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "ladder-gateway")})
    provider = SdkTracerProvider(resource=resource)
    exporter: SpanExporter
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def make_tracer(provider: TracerProvider | None) -> Tracer | None:
    """The gateway's tracer: from the given provider, else the global one if an application set it, else
    None (no spans at all: even no-op spans cost a context switch each)."""
    if provider is None:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return None
    return provider.get_tracer(TRACER_NAME)


def start_span(
    tracer: Tracer | None, name: str, kind: SpanKind = SpanKind.INTERNAL
) -> AbstractContextManager[Span]:
    """A current span from ``tracer``, or a do-nothing stand-in when tracing is off."""
    if tracer is None:
        return nullcontext(INVALID_SPAN)
    return tracer.start_as_current_span(name, kind=kind)


def extract_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The caller's W3C trace context (``traceparent``/``tracestate``), if any."""
    return _PROPAGATOR.extract(headers, getter=DefaultGetter())


def inject_context(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current span's ``traceparent`` to outgoing headers."""
    _PROPAGATOR.inject(headers)
    return headers
