"""``/healthz``, ``/readyz``, ``/metrics`` and the playground page at ``/``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ladder.gateway.deps import GatewayDep

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(gw: GatewayDep) -> Response:
    """Ready when the scorer is loaded, its batcher runs and it can answer (Triton up, or a fallback)."""
    can_score, scorer = gw.scorer_state()
    ready = gw.batcher.running and can_score
    body = {
        "status": "ready" if ready else ("unavailable" if gw.batcher.running else "starting"),
        "models": len(gw.pool.models),
        "checkpoint": str(gw.router.checkpoint.directory),
        "scorer": scorer,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(gw: GatewayDep) -> Response:
    """Prometheus exposition."""
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
