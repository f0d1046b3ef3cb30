"""``/healthz``, ``/readyz``, ``/metrics`` and the playground page at ``/``."""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ladder.gateway.deps import GatewayDep
from ladder.gateway.errors import AuthenticationError
from ladder.gateway.keys import presented_key

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, gw: GatewayDep) -> Response:
    """Ready when the scorer is loaded, its batcher runs and it can answer (Triton up, or a fallback) and
    the shared state answers, or the gateway is set to enforce limits locally while it does not. Says only
    ready or not (and ``degraded`` while limits are local); a caller with a client key also gets the scorer's
    and the shared state's details."""
    can_score, scorer = gw.scorer_state()
    state_up = await gw.spend.replay()
    ready = gw.batcher.running and can_score and (state_up or not gw.spend.fail_closed)
    body: dict[str, object] = {
        "status": "ready" if ready else ("unavailable" if gw.batcher.running else "starting")
    }
    if ready and not state_up:
        body["degraded"] = True
    if gw.clients.identify(request.headers) is not None and not gw.clients.auth_disabled:
        body["scorer"] = scorer
        body["state"] = {"backend": gw.state.backend, "up": state_up, "buffered": len(gw.spend.pending)}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request, gw: GatewayDep) -> Response:
    """Prometheus exposition (every client's name and spend): behind ``metrics_key`` when it is set."""
    required = gw.settings.metrics_key
    if required is not None:
        presented = presented_key(request.headers)
        client = gw.clients.identify(request.headers)
        admitted = (presented and hmac.compare_digest(presented, required.get_secret_value())) or (
            client is not None and client.admin
        )
        if not admitted:
            raise AuthenticationError("/metrics needs the metrics key: send 'Authorization: Bearer <key>'")
    return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
async def playground() -> Response:
    """The playground page, when it is installed."""
    index = STATIC / "index.html"
    if index.is_file():
        return FileResponse(index, media_type="text/html")
    return HTMLResponse(
        "<!doctype html><title>Ladder</title><p>Ladder gateway: POST /v1/chat/completions</p>"
    )
