"""The gateway's one typed settings object: environment (``LADDER_*``) over an optional YAML/JSON file."""

from __future__ import annotations

import json
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ladder.errors import ConfigError
from ladder.router import default_pool_path
from ladder.yamlfile import describe_validation_error, read_yaml
from service.triton_scorer import TritonScorerSettings

CONFIG_ENV = "LADDER_CONFIG"
PLACEHOLDER_KEYS = frozenset({"changeme", "change-me", "secret", "password", "test", "key", "api-key", "xxx"})
MIN_KEY_LENGTH = 12
DEFAULT_REDACTIONS = (
    r"[\w.+-]+@[\w-]+\.[\w.-]+",  # e-mail addresses
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{8,}",  # API keys
    r"\b\d(?:[ -]?\d){8,}\b",  # card, account and phone numbers
)

_file_data: ContextVar[dict[str, Any] | None] = ContextVar("ladder_settings_file", default=None)


class Settings(BaseSettings):
    """Everything the gateway can be told; unknown keys are errors."""

    model_config = SettingsConfigDict(
        env_prefix="LADDER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    pool: Path = Field(default_factory=default_pool_path, description="Pool file")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Client bearer keys"
    )
    auth_disabled: bool = Field(default=False, description="Serve without client keys (explicit opt-out)")
    policy_name: str = Field(default="ladder", pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    scorer_threads: int | None = Field(
        default=1, ge=1, description="ONNX Runtime threads per scorer call (None: ORT's default)"
    )
    scorer_workers: int | None = Field(
        default=None, ge=1, le=256, description="Batches scored at once (None: one per available CPU)"
    )
    scorer: Literal["embedded", "triton"] = Field(
        default="embedded", description="embedded: ONNX Runtime in-process; triton: the `triton` server"
    )
    triton: TritonScorerSettings = Field(
        default_factory=TritonScorerSettings, description="Triton client (LADDER_TRITON__URL, ...)"
    )
    batch_max_size: int = Field(default=32, ge=1, le=1024)
    batch_wait_ms: float = Field(
        default=0.0, ge=0, le=50, description="Under load, wait this long to fill a batch"
    )
    attempt_timeout_s: float = Field(
        default=60.0, gt=0, description="One upstream attempt (per chunk when streaming)"
    )
    connect_timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=1, ge=0, le=10, description="Retries of one model before falling back")
    retry_backoff_s: float = Field(default=0.1, ge=0)
    deadline_s: float = Field(default=120.0, gt=0, description="Total time to obtain an answer")
    keepalive_connections: int = Field(default=256, ge=1, description="Idle connections kept per upstream")
    breaker_failures: int = Field(default=5, ge=1, description="Consecutive failures that open a circuit")
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    baseline_model: str | None = Field(default=None, description="Cost baseline (default: the priciest)")
    sensitive_header: str = "x-ladder-sensitive"
    sensitive_patterns: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Regexes marking a prompt sensitive"
    )
    audit_log: str | None = Field(default=None, description="JSON-lines file, or '-' for stdout")
    audit_prompts: bool = Field(default=False, description="Put (redacted) prompt text in the audit log")
    audit_redactions: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_REDACTIONS))
    log_level: str = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, InitSettingsSource(settings_cls, _file_data.get() or {})

    @field_validator("api_keys", "sensitive_patterns", "audit_redactions", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return (
                json.loads(text)
                if text.startswith("[")
                else [v.strip() for v in text.split(",") if v.strip()]
            )
        return value

    @field_validator("sensitive_patterns", "audit_redactions")
    @classmethod
    def _compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return patterns

    @model_validator(mode="after")
    def _safe_auth(self) -> Settings:
        if self.auth_disabled:
            return self
        if not self.api_keys:
            raise ValueError(
                "api_keys is empty: set LADDER_API_KEYS, or LADDER_AUTH_DISABLED=true explicitly"
            )
        for key in self.api_keys:
            value = key.get_secret_value()
            if value.lower() in PLACEHOLDER_KEYS or len(value) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"refusing a placeholder or short API key (at least {MIN_KEY_LENGTH} characters)"
                )
        return self


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _read_file(path: Path) -> tuple[dict[str, Any], dict[Any, int]]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: file not found") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        lines: dict[Any, int] = {}
    else:
        data, lines = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the settings file must hold a mapping of keys to values")
    return data, lines


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build and validate settings: ``overrides`` > ``LADDER_*`` environment > the file > defaults."""
    path = config_file or os.environ.get(CONFIG_ENV) or None
    data, lines = _read_file(Path(path)) if path else ({}, {})
    token = _file_data.set(data)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        where = Path(path) if path else Path("settings")
        raise ConfigError(describe_validation_error(where, exc, lines)) from exc
    finally:
        _file_data.reset(token)
