"""A stream's total deadline: upstream chunks must all arrive by it, whatever keep-alive bytes come between."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import TypeVar

from ladder.core.errors import UpstreamTimeoutError

T = TypeVar("T")


async def within_deadline(
    chunks: AsyncGenerator[T, None], deadline: float, model: str
) -> AsyncGenerator[T, None]:
    """``chunks`` until ``deadline`` (``time.monotonic()``); past it, ``UpstreamTimeoutError``. SSE comment
    lines reset a read timeout but deliver no chunk, so they cannot hold a request past this. ``chunks`` is
    closed in every case."""
    try:
        while True:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise UpstreamTimeoutError(f"upstream for {model} passed the stream's deadline") from exc
            yield chunk
    finally:
        await chunks.aclose()
