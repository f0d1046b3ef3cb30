"""Settings: typed, from the environment and a file, validated at start; unsafe auth refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladder.core.errors import ConfigError
from ladder.gateway.settings import load_settings

KEY = "a-real-key-0123456789"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LADDER_API_KEYS", "LADDER_AUTH_DISABLED", "LADDER_CONFIG", "LADDER_PORT", "LADDER_RETRIES"):
        monkeypatch.delenv(name, raising=False)


def test_keys_are_required_unless_auth_is_disabled_explicitly() -> None:
    with pytest.raises(ConfigError, match="api_keys is empty"):
        load_settings()
    assert load_settings(auth_disabled=True).auth_disabled


@pytest.mark.parametrize("key", ["changeme", "short"])
def test_placeholder_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="placeholder or short"):
        load_settings(api_keys=[key])


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADDER_API_KEYS", f"{KEY},another-key-0123456789")
    monkeypatch.setenv("LADDER_PORT", "9100")
    settings = load_settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, "another-key-0123456789"]
    assert settings.port == 9100
    assert KEY not in repr(settings)


def test_file_under_environment_under_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"api_keys: [{KEY}]\nport: 9000\nretries: 3\n", encoding="utf-8")
    monkeypatch.setenv("LADDER_PORT", "9001")
    settings = load_settings(path, retries=4)
    assert (settings.port, settings.retries) == (9001, 4)
    monkeypatch.setenv("LADDER_CONFIG", str(path))
    assert load_settings().retries == 3


def test_a_typo_in_the_file_names_the_file_the_key_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"api_keys: [{KEY}]\nretires: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"gateway.yaml:2: retires: unknown key"):
        load_settings(path)


def test_json_files_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    path.write_text('{"auth_disabled": true, "deadline_s": -1}', encoding="utf-8")
    with pytest.raises(ConfigError, match="deadline_s"):
        load_settings(path)
    with pytest.raises(ConfigError, match="invalid regular expression"):
        load_settings(auth_disabled=True, sensitive_patterns=["(unclosed"])
