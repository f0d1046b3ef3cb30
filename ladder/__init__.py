"""Ladder's routing core: pool configuration, scoring runtime and the routing decision."""

from ladder.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    LadderError,
    NoEligibleModelError,
    PromptError,
    UnknownModelError,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "LadderError",
    "NoEligibleModelError",
    "PromptError",
    "UnknownModelError",
]
