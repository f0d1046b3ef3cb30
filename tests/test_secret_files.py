"""Secrets mounted as files (``LADDER_SECRETS_DIR``) instead of environment variables, as the Helm chart does."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support.common import UPSTREAM_KEY, UPSTREAM_KEY_ENV, RunningGateway
from gateway_support.upstream import FakeUpstream

from ladder.core import secrets
from ladder.core.errors import ConfigError
from ladder.gateway.settings import load_settings

pytest_plugins = ["gateway_support.fixtures"]

FILE_KEY = "sk-client-key-from-a-file-0123"
PROFILE_KEY = "sk-profile-key-from-a-file-0123"


@pytest.fixture()
def mounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder laid out as the chart's projected Secret volume, named in LADDER_SECRETS_DIR."""
    for name in list(os.environ):
        if name.startswith("LADDER_") and name != "LADDER_HOME":
            monkeypatch.delenv(name)
    monkeypatch.delenv(UPSTREAM_KEY_ENV, raising=False)
    (tmp_path / "LADDER_API_KEYS").write_text(FILE_KEY + "\n", encoding="utf-8")
    (tmp_path / "LADDER_KEY_PROFILES").write_text(json.dumps([{"name": "team", "key": PROFILE_KEY}]), encoding="utf-8")
    (tmp_path / "LADDER_TRAFFIC_DB").write_text(str(tmp_path / "traffic.db"), encoding="utf-8")
    (tmp_path / UPSTREAM_KEY_ENV).write_text(UPSTREAM_KEY + "\n", encoding="utf-8")
    monkeypatch.setenv(secrets.SECRETS_DIR_ENV, str(tmp_path))
    secrets._read.cache_clear()
    yield tmp_path
    secrets._read.cache_clear()


def test_settings_read_the_mounted_files_and_the_environment_wins(
    mounted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(None)
    assert [k.get_secret_value() for k in settings.api_keys] == [FILE_KEY]  # the newline is not part of it
    assert settings.key_profiles[0].key.get_secret_value() == PROFILE_KEY
    assert settings.traffic_db == str(mounted / "traffic.db")
    monkeypatch.setenv("LADDER_API_KEYS", "sk-from-the-environment-0123")
    assert [k.get_secret_value() for k in load_settings(None).api_keys] == ["sk-from-the-environment-0123"]


def test_a_missing_secrets_dir_is_a_clear_error(mounted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.SECRETS_DIR_ENV, str(mounted / "nowhere"))
    with pytest.raises(ConfigError, match=r"LADDER_SECRETS_DIR=.*nowhere: no such directory"):
        load_settings(None)


def test_the_gateway_serves_with_every_secret_from_files(
    mounted: Path, start_gateway: Callable[..., RunningGateway], upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UPSTREAM_KEY_ENV)  # start_gateway puts it in the environment: here only the file has it
    secrets._read.cache_clear()
    gateway = start_gateway(api_keys=None)
    body = {"model": "ladder", "messages": [{"role": "user", "content": "Name a prime."}]}
    for key in (FILE_KEY, PROFILE_KEY):
        answered = httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
        )
        assert answered.status_code == 200, answered.text
    assert upstream.seen and {s.headers.get("authorization") for s in upstream.seen} == {f"Bearer {UPSTREAM_KEY}"}
    refused = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": "Bearer nope"})
    assert refused.status_code == 401
