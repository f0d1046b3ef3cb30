"""Request plumbing shared by the route modules: the gateway, client auth, size-limited JSON bodies."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from ladder.gateway.context import RequestContext
from ladder.gateway.errors import InvalidRequestError, PayloadTooLargeError, describe_validation
from ladder.gateway.gateway import Gateway
from ladder.gateway.json_limits import check_json_bounds
from ladder.gateway.keys import Client

M = TypeVar("M", bound=BaseModel)


async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def require_api_key(request: Request, gw: GatewayDep) -> Client:
    """Bearer (or Anthropic-style ``x-api-key``) client keys (``api_keys`` and ``key_profiles``), unless
    auth is explicitly disabled; the caller's client (its profile's name, never the key)."""
    return gw.clients.authenticate(request.headers)


ClientDep = Annotated[Client, Depends(require_api_key)]


async def admit(request: Request, spends: bool = True) -> tuple[Gateway, Client]:
    """The gateway and the authenticated client (``ClientDep``), admitted within its requests per minute and,
    if ``spends``, its budget (429 with ``Retry-After`` otherwise). The scored routes call this first rather
    than declaring it as dependencies: FastAPI resolving three of them cost a tenth of the gateway's own CPU
    per request."""
    gw: Gateway = request.app.state.gateway
    client = gw.clients.authenticate(request.headers)
    await gw.limits.admit(client, spends=spends)
    return gw, client


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes, 400 when it is not a JSON object or nests or
    holds more than the gateway's settings allow (checked before it is parsed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the request body has {int(declared):,} bytes; the limit is {limit:,}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request body exceeds the limit of {limit:,} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidRequestError("the request body is empty; send a JSON object")
    settings = request.app.state.gateway.settings
    check_json_bounds(raw, settings.max_json_depth, settings.max_json_items)
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequestError("the request body is nested too deeply") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return data


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate a body; the first problem becomes a 400 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(*describe_validation(exc.errors())) from exc


async def admitted(
    request: Request, model: type[M], spends: bool = True
) -> tuple[Gateway, RequestContext, M, dict[str, Any]]:
    """A scored route's first step: the client admitted (``admit``), its body read (``read_json``) and
    validated as ``model``, and the request's context built from both; returns the raw body too."""
    gw, client = await admit(request, spends=spends)
    raw = await read_json(request, gw.settings.max_body_bytes)
    params = parse(model, raw)
    return gw, gw.context(client, request.headers, raw), params, raw
