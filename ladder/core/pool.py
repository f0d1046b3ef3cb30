"""The pool file: which models Ladder routes between, what they cost and what they can do."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from ladder.core.cascade import CascadeConfig
from ladder.core.errors import ConfigError
from ladder.core.policy import PolicyName
from ladder.core.sensitivity import check_patterns
from ladder.core.yamlfile import Location, line_of, read_yaml, validate_model
from ladder.defaults import default_checkpoint_path


class Strict(BaseModel):
    """Base for configuration models: unknown keys and silent coercions are errors."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class Capability(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    TOOLS = "tools"
    JSON = "json"


class Locality(StrEnum):
    ON_PREM = "on-prem"
    CLOUD = "cloud"


class Upstream(Strict):
    base_url: HttpUrl = Field(description="OpenAI-compatible base URL, e.g. https://host/v1")
    model: str = Field(min_length=1, description="The model id the upstream expects")
    api_key_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Environment variable with the key"
    )


class Price(Strict):
    input_per_1m: float = Field(ge=0, description="USD per 1M input tokens")
    output_per_1m: float = Field(ge=0, description="USD per 1M output tokens")


class Latency(Strict):
    ttft_ms: float = Field(gt=0, description="Typical time to the first token, in milliseconds")
    tokens_per_s: float = Field(gt=0, description="Typical decode speed, in output tokens per second")


class ModelSpec(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
    label: str | None = Field(default=None, description="The model's name in the checkpoint, if different")
    upstream: Upstream
    price: Price
    context_window: int = Field(gt=0)
    capabilities: frozenset[Capability] = frozenset({Capability.TEXT})
    locality: Locality = Locality.CLOUD
    system_prompt: str | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)
    expected_output_tokens: int | None = Field(default=None, gt=0)
    latency: Latency | None = Field(
        default=None, description="Expected latency before live measurements (e.g. from `ladder collect`)"
    )

    @property
    def checkpoint_label(self) -> str:
        return self.label or self.name

    def accepts(self, needed: frozenset[Capability]) -> bool:
        return needed <= self.capabilities


class RoutingDefaults(Strict):
    policy: PolicyName = PolicyName.CHEAPEST
    tolerance: float = Field(default=0.05, ge=0, le=1)
    cost_weight: float = Field(
        default=0.01, ge=0, description="utility policy: P(correct) given up per USD per 1K requests"
    )
    budget_per_1k: float | None = Field(default=None, gt=0, description="budget policy: USD per 1K requests")
    encoder: str = "multilingual-e5-small"
    encoder_variant: Literal["fp32", "int8"] = "int8"
    batch_invariant: bool = Field(
        default=True,
        description=(
            "Scores never depend on what a prompt is batched with (per-tensor int8 graphs run prompts alone)"
        ),
    )
    checkpoint: Path = Field(
        default_factory=default_checkpoint_path, description="Default: the checkpoint shipped with Ladder"
    )
    max_prompt_tokens: int = Field(default=512, ge=16, le=8192)
    default_output_tokens: int = Field(default=256, gt=0)
    cascade: CascadeConfig = Field(
        default_factory=CascadeConfig, description="The gateway's cascade mode (answer-aware escalation)"
    )

    @model_validator(mode="after")
    def _budget_needs_target(self) -> RoutingDefaults:
        if self.policy is PolicyName.BUDGET and self.budget_per_1k is None:
            raise ValueError("policy 'budget' needs budget_per_1k")
        return self


class PoolConfig(Strict):
    version: Literal[1] = 1
    routing: RoutingDefaults = Field(default_factory=RoutingDefaults)
    models: tuple[ModelSpec, ...] = Field(min_length=1)
    sensitive_patterns: tuple[str, ...] = Field(
        default=(),
        description=(
            "Regexes marking a prompt sensitive (on-prem models only): in the gateway (with its own "
            "setting), in `ladder collect` and in the LLM judge"
        ),
    )

    @field_validator("sensitive_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        check_patterns(patterns)
        return patterns

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
        seen: set[str] = set()
        for model in models:
            if model.name in seen:
                raise ValueError(f"duplicate model name {model.name!r}")
            seen.add(model.name)
        return models

    @model_validator(mode="after")
    def _cascade_models_in_pool(self) -> PoolConfig:
        for setting, named in self.routing.cascade.named_models().items():
            if named not in self.names:
                raise ValueError(
                    f"routing.cascade.{setting} {named!r} is not a model of this pool {list(self.names)}"
                )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(model.name for model in self.models)

    def model(self, name: str) -> ModelSpec:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


def _refuse_duplicate_names(path: Path, data: Any, lines: dict[Location, int]) -> None:
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        return
    first_line: dict[str, int | None] = {}
    for index, entry in enumerate(models):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        line = line_of(lines, ("models", index, "name"))
        if name in first_line:
            raise ConfigError(
                f"{path}:{line}: models.{index}.name: duplicate model name {name!r}"
                f" (first defined on line {first_line[name]})"
            )
        first_line[name] = line


def load_pool(path: Path | str, checkpoint: Path | None = None) -> PoolConfig:
    """Load and validate a pool file; relative checkpoint paths are resolved against the file.

    ``checkpoint`` (a command's ``--checkpoint DIR``) replaces ``routing.checkpoint``; a relative one is
    resolved against the working folder, as a path typed on the command line is.
    """
    path = Path(path)
    data, lines = read_yaml(path)
    _refuse_duplicate_names(path, data, lines)
    pool = validate_model(path, data, lines, PoolConfig)
    chosen = checkpoint.resolve() if checkpoint is not None else pool.routing.checkpoint
    if not chosen.is_absolute():
        chosen = (path.parent / chosen).resolve()
    if chosen != pool.routing.checkpoint:
        routing = pool.routing.model_copy(update={"checkpoint": chosen})
        pool = pool.model_copy(update={"routing": routing})
    return pool
