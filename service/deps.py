"""Request plumbing shared by the route modules: the gateway, client auth, size-limited JSON bodies."""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from service.errors import AuthenticationError, InvalidRequestError, PayloadTooLargeError
from service.gateway import Gateway

M = TypeVar("M", bound=BaseModel)


async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def _presented_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key", "").strip()


async def require_api_key(request: Request, gw: GatewayDep) -> None:
    """Bearer (or Anthropic-style ``x-api-key``) client keys, unless auth is explicitly disabled."""
    if gw.settings.auth_disabled:
        return
    presented = _presented_key(request).encode()
    if not presented:
        raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
    if not any(hmac.compare_digest(presented, k.get_secret_value().encode()) for k in gw.settings.api_keys):
        raise AuthenticationError("invalid API key")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes, 400 when it is not a JSON object."""
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
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return data


TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "function-after", "literal"})


def _is_type_tag(part: int | str) -> bool:
    """Pydantic names the branch of a union in an error's location (``str``, ``list[...]``): not a field."""
    return isinstance(part, str) and (part in TYPE_TAGS or "[" in part)


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate a body; the first problem becomes a 400 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if not _is_type_tag(p)) or None
        raise InvalidRequestError(f"{param + ': ' if param else ''}{first['msg']}", param) from exc
