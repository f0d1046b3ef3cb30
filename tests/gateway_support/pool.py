"""The test pool: three models behind the fake upstream, from a cheap on-prem one to a pricey vision one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ladder.training.prior_checkpoint import make_checkpoint

# name, locality, capabilities, context window, $/1M in, $/1M out, head bias (P(correct) ~ sigmoid(bias))
TEST_MODELS: tuple[tuple[str, str, list[str], int, float, float, float], ...] = (
    ("small-local", "on-prem", ["text"], 4096, 0.10, 0.20, 0.0),
    ("mid-cloud", "cloud", ["text", "tools", "json"], 32768, 0.50, 1.50, 1.0),
    ("vision-pro", "cloud", ["text", "image", "tools", "json"], 128000, 3.00, 15.00, 2.0),
)
NAMES = tuple(m[0] for m in TEST_MODELS)
BIASES = tuple(m[6] for m in TEST_MODELS)


def pool_data(upstream_url: str, checkpoint: Path, key_env: str | None = None) -> dict[str, Any]:
    models = []
    for name, locality, capabilities, window, price_in, price_out, _ in TEST_MODELS:
        upstream: dict[str, Any] = {"base_url": f"{upstream_url}/{name}/v1", "model": f"upstream-{name}"}
        if key_env:
            upstream["api_key_env"] = key_env
        models.append(
            {
                "name": name,
                "upstream": upstream,
                "price": {"input_per_1m": price_in, "output_per_1m": price_out},
                "context_window": window,
                "capabilities": capabilities,
                "locality": locality,
                "expected_output_tokens": 200,
            }
        )
    return {"version": 1, "routing": {"checkpoint": str(checkpoint), "tolerance": 0.05}, "models": models}


def write_pool(path: Path, upstream_url: str, checkpoint: Path, key_env: str | None = None) -> Path:
    path.write_text(
        yaml.safe_dump(pool_data(upstream_url, checkpoint, key_env), sort_keys=False), encoding="utf-8"
    )
    return path


def shared_pool(
    directory: Path,
    upstream_url: str,
    key_env: str | None,
    models: Mapping[str, Mapping[str, Any]] | None = None,
    routing: Mapping[str, Any] | None = None,
) -> Path:
    """``directory/pool.yaml``, the test pool over a prior checkpoint written beside it; ``models`` (by name)
    and ``routing`` override the pool file's fields."""
    checkpoint = directory / "checkpoint"
    make_checkpoint(checkpoint, NAMES, BIASES)
    data = pool_data(upstream_url, checkpoint, key_env)
    for model in data["models"]:
        model.update((models or {}).get(model["name"], {}))
    data["routing"].update(routing or {})
    path = directory / "pool.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
