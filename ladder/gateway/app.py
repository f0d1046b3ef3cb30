"""The app factory: settings in, a FastAPI gateway out (router loaded and validated before it returns)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.gateway.audit import AuditLog
from ladder.gateway.batcher import ScoreBatcher, score_texts
from ladder.gateway.costs import baseline_model
from ladder.gateway.dispatch import Dispatcher
from ladder.gateway.errors import install_error_handlers
from ladder.gateway.gateway import Gateway
from ladder.gateway.inflight import InFlightMiddleware
from ladder.gateway.metrics import GatewayMetrics
from ladder.gateway.middleware import (
    AdmissionMiddleware,
    RefusalAuditMiddleware,
    RequestLogMiddleware,
    TracingMiddleware,
)
from ladder.gateway.routes import chat, health, messages, responses, route
from ladder.gateway.routes import feedback as feedback_routes
from ladder.gateway.routes import usage as usage_routes
from ladder.gateway.settings import Settings, available_cpus, load_settings, scoring_batch
from ladder.gateway.shadow import ShadowJudge
from ladder.gateway.spend import SpendHook
from ladder.gateway.state import make_state
from ladder.gateway.tracing import make_tracer, provider_from_env
from ladder.gateway.traffic_store import TrafficStore
from ladder.gateway.triton_scorer import TritonScorer, with_triton


def create_app(
    settings: Settings | None = None,
    *,
    router: Router | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    tracer_provider: TracerProvider | None = None,
    spend_guard: SpendHook | None = None,
) -> FastAPI:
    """Build the gateway. ``router``, ``upstream_transport`` and ``tracer_provider`` are seams for tests;
    ``spend_guard`` replaces the dispatcher's spend hook, called around every upstream attempt (by default the
    budgets' ``BudgetHook``, which charges each paid attempt to the request's reservation)."""
    settings = settings or load_settings()
    if router is None:
        router = Router.from_pool(load_pool(settings.pool, settings.checkpoint), threads=settings.scorer_threads)
    triton: TritonScorer | None = None
    if settings.scorer == "triton":  # the embedded scorer stays as the fallback
        router, triton = with_triton(router, settings.triton)
    own_provider = tracer_provider is None
    provider = tracer_provider or provider_from_env()
    tracer = make_tracer(provider)
    metrics = GatewayMetrics()
    dispatcher = Dispatcher.from_settings(settings, metrics, tracer, upstream_transport)
    batcher = ScoreBatcher(
        functools.partial(score_texts, router),
        max_batch=scoring_batch(settings),
        max_wait_s=settings.batch_wait_ms / 1000,
        on_batch=metrics.batch_size.observe,
        workers=settings.scorer_workers or available_cpus(),
        max_queue=settings.score_queue_max,
        max_queue_wait_s=settings.score_queue_wait_s,
        retry_after_s=settings.overload_retry_after_s,
    )
    audit = AuditLog(settings.audit_log, settings.audit_prompts, settings.audit_redactions)
    traffic = TrafficStore(settings.traffic_db) if settings.traffic_db else None
    shadow = (
        ShadowJudge(settings.shadow, router.pool, dispatcher, traffic)
        if traffic is not None and settings.shadow.share > 0
        else None
    )
    gateway = Gateway(
        settings,
        router,
        batcher,
        dispatcher,
        metrics,
        audit,
        tracer,
        baseline_model(router.pricing, settings.baseline_model),
        triton,
        traffic,
        shadow=shadow,
        state=make_state(
            settings.redis_url.get_secret_value() if settings.redis_url else None, settings.redis_timeout_s
        ),
        spend_hook=spend_guard,
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
            if shadow is not None:
                await shadow.aclose()  # judgements in flight are dropped: they are samples, not promises
            if triton is not None:
                await triton.close()
            await dispatcher.aclose()
            audit.close()
            if traffic is not None:
                traffic.close()
            await gateway.limits.drain()
            await gateway.sessions.drain()
            await gateway.state.aclose()
            if own_provider and provider is not None and hasattr(provider, "shutdown"):
                provider.shutdown()

    app = FastAPI(title="Ladder gateway", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    install_error_handlers(app)
    for module in (chat, messages, responses, route, health):
        app.include_router(module.router)
    app.include_router(feedback_routes.router)
    app.include_router(usage_routes.router)
    if tracer is not None:
        app.add_middleware(TracingMiddleware, tracer=tracer)
    app.add_middleware(InFlightMiddleware, inflight=gateway.inflight, clients=gateway.clients)
    app.add_middleware(AdmissionMiddleware, batcher=batcher, metrics=metrics)
    app.add_middleware(RefusalAuditMiddleware, audit=audit)  # outside admission: it audits its refusals too
    app.add_middleware(RequestLogMiddleware)  # outermost: it also sees what the tracing middleware does
    return app
