"""Run the gateway under uvicorn (used by ``ladder serve`` and ``python -m ladder.gateway``)."""

from __future__ import annotations

import gc
import importlib.util
import socket

import uvicorn
from fastapi import FastAPI

from ladder.gateway.app import create_app
from ladder.gateway.logs import logging_config
from ladder.gateway.settings import Settings
from ladder.gateway.startup import bind


def uvicorn_config(settings: Settings, app: FastAPI | None = None) -> uvicorn.Config:
    """uvicorn with uvloop and httptools when installed; JSON logs (the request log replaces uvicorn's)."""
    fast = (
        importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None
    )
    return uvicorn.Config(
        app or create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if fast else "h11",
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level, settings.audit_redactions),  # JSON lines on stderr
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def serve(settings: Settings, sock: socket.socket | None = None) -> None:
    """Serve until interrupted; the port is bound first, so a busy one is a clear error, not exit 3."""
    sock = sock or bind(settings)
    server = uvicorn.Server(uvicorn_config(settings))
    gc.collect()
    gc.freeze()  # the loaded router and app live as long as the process: later collections skip them
    server.run(sockets=[sock] if sock is not None else None)
