"""What the gateway says before it listens: the banner, unset key variables, and a port already in use."""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass

from ladder.core.errors import ConfigError
from ladder.core.pool import PoolConfig
from ladder.gateway.settings import Settings


@dataclass(frozen=True)
class MissingKey:
    """A pool model whose ``upstream.api_key_env`` variable is unset."""

    model: str
    variable: str


def missing_keys(pool: PoolConfig) -> list[MissingKey]:
    """The pool models whose key variable is named but unset or empty."""
    return [
        MissingKey(m.name, m.upstream.api_key_env)
        for m in pool.models
        if m.upstream.api_key_env and not os.environ.get(m.upstream.api_key_env)
    ]


def check_keys(pool: PoolConfig, settings: Settings) -> list[str]:
    """One warning per unset key variable, naming its models; in production mode, a refusal to start."""
    missing = missing_keys(pool)
    if missing and settings.production:
        names = ", ".join(sorted({k.variable for k in missing}))
        raise ConfigError(
            f"production mode: {len(missing)} pool model(s) have no key ({names} unset); set them, or remove "
            "upstream.api_key_env from models that need none"
        )
    by_variable: dict[str, list[str]] = {}
    for key in missing:
        by_variable.setdefault(key.variable, []).append(key.model)
    return [
        f"{variable} is not set (upstream.api_key_env of {', '.join(models)}): requests to "
        f"{'it' if len(models) == 1 else 'them'} would go without an Authorization header"
        for variable, models in by_variable.items()
    ]


def bind(settings: Settings) -> socket.socket:
    """The listening socket, bound before anything slow starts; a busy port is one clear error."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {settings.port} on {settings.host} is already in use (another `ladder serve`?): stop "
                "that process, or choose another port with --port N (or LADDER_PORT)"
            ) from exc
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def banner(pool: PoolConfig, settings: Settings, port: int) -> list[str]:
    """Lines that say what is served where: pool, checkpoint, models with locality, URLs, how clients log in."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{port}"
    models = ", ".join(f"{m.name} ({m.locality.value})" for m in pool.models)
    if settings.auth_disabled:
        keys = "none needed (LADDER_AUTH_DISABLED=true)"
    else:
        count = len(settings.api_keys) + len(settings.key_profiles)
        keys = f"{count} key(s) from LADDER_API_KEYS / key_profiles; send one as `Authorization: Bearer KEY`"
    return [
        f"pool:       {settings.pool} ({len(pool.models)} models)",
        f"checkpoint: {pool.routing.checkpoint}",
        f"models:     {models}",
        f"serving:    {url}/v1 (OpenAI: /v1/chat/completions; Anthropic: /v1/messages)",
        f"playground: {url}/",
        f"client key: {keys}",
    ]
