"""The gateway's one typed settings object: environment (``LADDER_*``) over an optional YAML/JSON file."""

from __future__ import annotations

import json
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ladder.core.errors import ConfigError
from ladder.core.router import default_pool_path
from ladder.core.secrets import SECRETS_DIR_ENV, secrets_dir
from ladder.core.sensitivity import check_patterns
from ladder.core.yamlfile import config_text, describe_validation_error, read_yaml
from ladder.gateway.keys import KeyProfile
from ladder.gateway.triton_scorer import TritonScorerSettings

CONFIG_ENV = "LADDER_CONFIG"
PLACEHOLDER_KEYS = frozenset({"changeme", "change-me", "secret", "password", "test", "key", "api-key", "xxx"})
MIN_KEY_LENGTH = 12
DEFAULT_REDACTIONS = (
    r"[\w.+-]+@[\w-]+\.[\w.-]+",  # e-mail addresses
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{8,}",  # API keys
    r"\b\d(?:[ -]?\d){8,}\b",  # card, account and phone numbers
)

_file_data: ContextVar[dict[str, Any] | None] = ContextVar("ladder_settings_file", default=None)


class ShadowSettings(BaseModel):
    """Shadow judging (ladder/gateway/shadow.py): off while ``share`` is 0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(default=0.0, ge=0, le=1, description="Share of answered chats also judged")
    reference_model: str | None = Field(
        default=None, description="Pool model every sampled request also goes to"
    )
    judge_model: str | None = Field(default=None, description="Pool model that grades both answers")
    allow_self_judge: bool = Field(default=False, description="Judge answers the judge model itself gave")
    budget_usd: float = Field(
        default=1.0, ge=0, description="Spend on reference and judge calls, per process"
    )
    max_in_flight: int = Field(
        default=4, ge=1, le=256, description="Judgements running at once; more are skipped"
    )
    judge_retries: int = Field(default=1, ge=0, le=3, description="Retries of a malformed verdict")
    seed: int | None = Field(default=None, description="Seed of the sampling (tests)")

    @model_validator(mode="after")
    def _complete(self) -> ShadowSettings:
        if self.share > 0:
            if not self.reference_model or not self.judge_model:
                raise ValueError("shadow.share > 0 needs shadow.reference_model and shadow.judge_model")
            if self.reference_model == self.judge_model:
                raise ValueError(
                    "shadow.judge_model must differ from shadow.reference_model (no self-grading)"
                )
        return self


class Settings(BaseSettings):
    """Everything the gateway can be told; unknown keys are errors."""

    model_config = SettingsConfigDict(
        env_prefix="LADDER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    pool: Path = Field(default_factory=default_pool_path, description="Pool file")
    checkpoint: Path | None = Field(
        default=None, description="Checkpoint folder to score with (default: the pool's routing.checkpoint)"
    )
    production: bool = Field(
        default=False,
        description="Refuse to start, rather than warn, when a model's api_key_env variable is unset",
    )
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
    batch_max_size: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Prompts per scorer call (None: 8 with the embedded scorer, 32 with Triton)",
    )
    batch_wait_ms: float = Field(
        default=0.0, ge=0, le=50, description="Under load, wait this long to fill a batch"
    )
    score_queue_max: int = Field(
        default=256, ge=1, description="Requests waiting to be scored; beyond it, 429 with Retry-After"
    )
    score_queue_wait_s: float | None = Field(
        default=2.0, gt=0, description="At the measured scoring rate, the longest a request may wait in it"
    )
    overload_retry_after_s: int = Field(default=1, ge=1, description="Retry-After of an overload 429")
    attempt_timeout_s: float = Field(
        default=60.0, gt=0, description="One upstream attempt (per chunk when streaming)"
    )
    connect_timeout_s: float = Field(default=5.0, gt=0)
    first_byte_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Time to an attempt's first byte (streams: first event); None: a third of deadline_s",
    )
    retries: int = Field(
        default=1,
        ge=0,
        le=10,
        description="Retries of one model: only after a refused connection or a 5xx, never a timeout",
    )
    retry_backoff_s: float = Field(default=0.1, ge=0)
    deadline_s: float = Field(default=120.0, gt=0, description="Total time to obtain an answer")
    keepalive_connections: int = Field(default=256, ge=1, description="Idle upstream connections kept")
    keepalive_expiry_s: float = Field(default=5.0, gt=0, description="Close idle upstream connections after")
    upstream_max_connections: int = Field(default=512, ge=1, description="Open upstream connections at most")
    upstream_http: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp", description="Upstream connection pool: aiohttp's (4x less CPU per call) or httpx's"
    )
    upstream_ca_bundle: Path | None = Field(
        default=None, description="PEM file of extra CAs trusted for HTTPS upstreams (a private CA)"
    )
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
    traffic_db: str | None = Field(
        default=None,
        description="Decisions and client feedback (a SQLite path or a SQLAlchemy URL): enables /v1/feedback",
    )
    shadow: ShadowSettings = Field(
        default_factory=ShadowSettings, description="Shadow judging (LADDER_SHADOW__SHARE, ...)"
    )
    log_level: str = "info"
    key_profiles: list[KeyProfile] = Field(
        default_factory=list,
        description="Client keys with a name, default tolerance, allowed models, rate limit and budgets "
        "(LADDER_KEY_PROFILES as JSON; accepted besides api_keys)",
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Share sessions, rate limits and spend in this Redis (else in-process)"
    )
    redis_prefix: str = Field(default="ladder:", pattern=r"^[A-Za-z0-9_.:{}-]{0,64}$")
    redis_timeout_s: float = Field(default=0.5, gt=0, le=30, description="One Redis call")
    state_unavailable: Literal["closed", "local"] = Field(
        default="closed",
        description="Redis unreachable: 'closed' refuses the requests of keys with limits (503); 'local' "
        "enforces them in this process from the last spend it read; spend is replayed when Redis returns",
    )
    reserve_output_tokens: int = Field(
        default=4096, ge=1, description="Output tokens held against a budget for a request without max_tokens"
    )
    stream_deadline_s: float | None = Field(
        default=None, gt=0, description="Total time of a streamed answer, comment lines or not (None: deadline_s)"
    )
    feedback_per_minute: int = Field(default=60, ge=1, description="Feedback a client key may send per minute")
    metrics_key: SecretStr | None = Field(
        default=None,
        description="Bearer key /metrics requires (an admin profile's key also works); unset: /metrics is open "
        "and must stay on a private network",
    )
    max_json_depth: int = Field(default=64, ge=2, le=900, description="Nesting of arrays/objects in a body")
    max_json_items: int = Field(
        default=100_000, ge=100, description="Arrays, objects and elements in a body (bounds its memory)"
    )
    session_affinity: bool = Field(default=True, description="Keep a conversation's model across turns")
    session_ttl_s: float = Field(default=3600.0, gt=0, description="How long an idle session is kept")
    session_margin: float = Field(
        default=0.1, ge=0, le=1, description="Leave the session's model when its P(correct) is this far below"
    )
    session_header: str = Field(default="x-ladder-session-id", pattern=r"^[A-Za-z0-9-]{1,64}$")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # a secret mounted as a file (LADDER_SECRETS_DIR/LADDER_REDIS_URL, ...) counts as that variable
        return (
            init_settings,
            env_settings,
            file_secret_settings,
            InitSettingsSource(settings_cls, _file_data.get() or {}),
        )

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
        check_patterns(patterns)
        return patterns

    @model_validator(mode="after")
    def _shadow_needs_a_store(self) -> Settings:
        if self.shadow.share > 0 and not self.traffic_db:
            raise ValueError("shadow judging stores its verdicts in the traffic database: set traffic_db")
        return self

    @model_validator(mode="after")
    def _safe_auth(self) -> Settings:
        names = [p.name for p in self.key_profiles]
        secrets = [p.key.get_secret_value() for p in self.key_profiles]
        if len(set(names)) < len(names) or len(set(secrets)) < len(secrets):
            raise ValueError("key_profiles: every profile needs its own name and its own key")
        if self.auth_disabled:
            return self
        if not self.api_keys and not self.key_profiles:
            raise ValueError(
                "api_keys is empty: set LADDER_API_KEYS (or key_profiles), "
                "or LADDER_AUTH_DISABLED=true explicitly"
            )
        for key in [*self.api_keys, *(p.key for p in self.key_profiles)]:
            value = key.get_secret_value()
            if value.lower() in PLACEHOLDER_KEYS or len(value) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"refusing a placeholder or short API key (at least {MIN_KEY_LENGTH} characters)"
                )
        return self


EMBEDDED_BATCH = 8  # on CPU, rows per single-threaded call run fastest at 4-8 and slower past 16
TRITON_BATCH = 32


def scoring_batch(settings: Settings) -> int:
    """Prompts per scorer call: ``batch_max_size``, else what suits the scorer. On CPU, larger caps also let
    one worker take a whole burst while the other scores prompts one at a time."""
    if settings.batch_max_size is not None:
        return settings.batch_max_size
    return TRITON_BATCH if settings.scorer == "triton" else EMBEDDED_BATCH


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _read_file(path: Path) -> tuple[dict[str, Any], dict[Any, int]]:
    if path.suffix == ".json":
        try:
            data = json.loads(config_text(path))
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
    """Build and validate settings: ``overrides`` > ``LADDER_*`` environment > files named like those variables
    in ``LADDER_SECRETS_DIR`` (mounted secrets) > the settings file > defaults."""
    path = config_file or os.environ.get(CONFIG_ENV) or None
    data, lines = _read_file(Path(path)) if path else ({}, {})
    secrets = secrets_dir()
    if secrets is not None and not secrets.is_dir():
        raise ConfigError(f"{SECRETS_DIR_ENV}={secrets}: no such directory (the mounted secrets)")
    token = _file_data.set(data)
    try:
        values = {k: v for k, v in overrides.items() if v is not None}
        return Settings(_secrets_dir=secrets, **values)  # type: ignore[call-arg]  # pydantic-settings init option
    except ValidationError as exc:
        where = Path(path) if path else Path("settings")
        raise ConfigError(describe_validation_error(where, exc, lines)) from exc
    finally:
        _file_data.reset(token)
