"""``GET /v1/usage``: a client key's requests, tokens and spend today and this month, against its budgets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ladder.gateway.deps import ClientDep, GatewayDep

router = APIRouter()


@router.get("/v1/usage")
async def usage(gw: GatewayDep, client: ClientDep) -> dict[str, Any]:
    """The caller's own usage; a key whose profile says ``admin: true`` sees every client key's."""
    clients = sorted(gw.clients.clients.values(), key=lambda c: c.name) if client.admin else [client]
    return {
        "object": "ladder.usage",
        "client": client.name,
        "admin": client.admin,
        "state": gw.state.backend,
        "data": [await gw.limits.usage(c) for c in clients],
    }
