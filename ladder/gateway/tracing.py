"""OpenTelemetry: a tracer from the standard ``OTEL_*`` variables, W3C context in and out of the gateway."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import urlsplit

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


# ---- OpenTelemetry GenAI semantic conventions --------------------------------------------------------------
# The request's span carries the gen_ai.* attributes of one chat operation, and the routing decision under
# ladder.*, so Tempo, Langfuse and Phoenix show the model, tokens and decision without custom parsing.

PROVIDERS = (  # upstream host suffix -> gen_ai.provider.name (the convention's well-known values)
    ("api.openai.com", "openai"),
    ("openai.azure.com", "azure.ai.openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.deepseek.com", "deepseek"),
    ("api.groq.com", "groq"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cohere.com", "cohere"),
    ("amazonaws.com", "aws.bedrock"),
)
REQUEST_PARAMETERS = (  # chat body field -> gen_ai.request.* attribute
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
    ("n", "gen_ai.request.choice.count"),
)
AttributeValue = str | bool | int | float | Sequence[str]


def provider_name(base_url: str) -> str:
    """``gen_ai.provider.name`` for an upstream base URL: a well-known value, else the host."""
    host = (urlsplit(base_url).hostname or "").lower()
    for suffix, name in PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return name
    return host or "_OTHER"


def genai_request_attributes(body: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """The chat operation and the client's request parameters (the model it asked for, e.g. ``ladder``)."""
    attributes: dict[str, AttributeValue] = {"gen_ai.operation.name": "chat"}
    if isinstance(body.get("model"), str):
        attributes["gen_ai.request.model"] = body["model"]
    for field, name in REQUEST_PARAMETERS:
        value = body.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    # no client strings (stop sequences, names, ids) in spans: a trace backend is not where prompts may go
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in ("json_object", "json_schema"):
        attributes["gen_ai.output.type"] = "json"
    return attributes


def decision_attributes(summary: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """The routing decision (``Routed.summary()``) as flat ``ladder.*`` attributes: every P(correct) and
    expected cost, the threshold, the reason, the exclusions and the session."""
    attributes: dict[str, AttributeValue] = {
        "ladder.request_id": str(summary["request_id"]),
        "ladder.decision.model": str(summary["routed_model"]),
        "ladder.decision.policy": str(summary["policy"]),
        "ladder.decision.tolerance": float(summary["tolerance"]),
        "ladder.decision.reason": str(summary["reason"]),
        "ladder.routing_ms": float(summary["routing_ms"]),
        "ladder.routed_tokens": int(summary["routed_tokens"]),
    }
    if summary.get("threshold") is not None:
        attributes["ladder.decision.threshold"] = float(summary["threshold"])
    for name, p in summary["p_correct"].items():
        attributes[f"ladder.p_correct.{name}"] = float(p)
    for name, cost in summary["expected_costs_usd"].items():
        attributes[f"ladder.expected_cost_usd.{name}"] = float(cost)
    for name, why in summary["excluded"].items():
        attributes[f"ladder.excluded.{name}"] = str(why)
    if summary.get("client"):
        attributes["ladder.client"] = str(summary["client"])
    session = summary.get("session")
    if session:
        attributes["gen_ai.conversation.id"] = str(session["id"])
        attributes["ladder.session.status"] = str(session["status"])
        attributes["ladder.session.kept"] = bool(session["kept"])
        attributes["ladder.session.source"] = str(session["source"])
        if session.get("previous_model"):
            attributes["ladder.session.previous_model"] = str(session["previous_model"])
    return attributes


def genai_response_attributes(
    model: str,
    upstream_model: str,
    base_url: str,
    input_tokens: int | None,
    output_tokens: int | None,
    response_id: str | None = None,
    finish_reasons: Sequence[str] = (),
) -> dict[str, AttributeValue]:
    """The answering model (the provider's id, as cost tools price it), its provider, usage, and the
    reply's id and finish reasons."""
    provider = provider_name(base_url)
    attributes: dict[str, AttributeValue] = {
        "gen_ai.response.model": upstream_model,
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the attribute's older name, still read by some tools
        "ladder.model": model,
    }
    if input_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = input_tokens
    if output_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = output_tokens
    if response_id is not None:
        attributes["gen_ai.response.id"] = response_id
    if finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = list(finish_reasons)
    return attributes


def annotate_current_span(attributes: Mapping[str, AttributeValue]) -> None:
    """Add attributes to the current span (the request's server span) when it is recording."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)
