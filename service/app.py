"""The app factory: settings in, a FastAPI gateway out (router loaded and validated before it returns)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from ladder.pool import load_pool
from ladder.router import Router
from service.audit import AuditLog
from service.batcher import ScoreBatcher, score_texts
from service.breaker import CircuitBreaker
from service.costs import baseline_model
from service.dispatch import Dispatcher
from service.errors import install_error_handlers
from service.gateway import Gateway
from service.metrics import GatewayMetrics
from service.middleware import TracingMiddleware
from service.routes import chat, health, messages, route
from service.settings import Settings, available_cpus, load_settings
from service.tracing import make_tracer, provider_from_env
from service.triton_scorer import TritonScorer, with_triton
from service.upstream import UpstreamClient


def create_app(
    settings: Settings | None = None,
    *,
    router: Router | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the gateway. ``router``, ``upstream_transport`` and ``tracer_provider`` are seams for tests."""
    settings = settings or load_settings()
    if router is None:
        router = Router.from_pool(load_pool(settings.pool), threads=settings.scorer_threads)
    triton: TritonScorer | None = None
    if settings.scorer == "triton":  # the embedded scorer stays as the fallback
        router, triton = with_triton(router, settings.triton)
    own_provider = tracer_provider is None
    provider = tracer_provider or provider_from_env()
    tracer = make_tracer(provider)
    metrics = GatewayMetrics()
    client = UpstreamClient(settings.connect_timeout_s, settings.keepalive_connections, upstream_transport)
    dispatcher = Dispatcher(
        client,
        CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s),
        metrics,
        tracer,
        attempt_timeout_s=settings.attempt_timeout_s,
        retries=settings.retries,
        backoff_s=settings.retry_backoff_s,
        deadline_s=settings.deadline_s,
    )
    batcher = ScoreBatcher(
        functools.partial(score_texts, router),
        max_batch=settings.batch_max_size,
        max_wait_s=settings.batch_wait_ms / 1000,
        on_batch=metrics.batch_size.observe,
        workers=settings.scorer_workers or available_cpus(),
    )
    audit = AuditLog(settings.audit_log, settings.audit_prompts, settings.audit_redactions)
    gateway = Gateway(
        settings,
        router,
        batcher,
        dispatcher,
        metrics,
        audit,
        tracer,
        baseline_model(router.pool, settings.baseline_model),
        triton,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if triton is not None:
            await triton.start()  # its gRPC channels belong to this loop; Triton down is not fatal here
        await batcher.start()
        try:
            yield
        finally:
            await batcher.close()
            if triton is not None:
                await triton.close()
            await client.aclose()
            audit.close()
            if own_provider and provider is not None and hasattr(provider, "shutdown"):
                provider.shutdown()

    app = FastAPI(title="Ladder gateway", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    install_error_handlers(app)
    for module in (chat, messages, route, health):
        app.include_router(module.router)
    if tracer is not None:
        app.add_middleware(TracingMiddleware, tracer=tracer)
    return app
