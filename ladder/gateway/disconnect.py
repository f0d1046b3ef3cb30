"""Cancel work when the client goes away: a non-streaming request is cancelled when its client disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from ladder.gateway.errors import ClientDisconnected

T = TypeVar("T")


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` in this task; a watcher cancels it (and the upstream call inside) on disconnect."""
    handler = asyncio.current_task()
    assert handler is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await request.receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        handler.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:
            handler.uncancel()
            raise ClientDisconnected("the client disconnected") from None
        raise
    finally:
        watcher.cancel()
