"""Expected latency per model from the answers `ladder collect` stored: the pool file's ``latency:``."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from ladder.core.errors import ConfigError
from ladder.core.latency import LatencyProfile, LatencySample, profile_from_samples
from ladder.training.collect.store import AnswerStore
from ladder.training.pool_edit import edit_pool, set_key


@dataclass(frozen=True)
class MeasuredLatency:
    """One model's profile learned from its stored answers, and how many answers it rests on."""

    model: str
    profile: LatencyProfile
    answers: int
    streamed: int  # answers with a time to first token

    def entry(self) -> dict[str, float] | None:
        """The pool file's ``latency:`` entry; None while the decode speed is unknown."""
        if math.isinf(self.profile.tokens_per_s):
            return None
        return {
            "ttft_ms": round(self.profile.ttft_s * 1000, 1),
            "tokens_per_s": round(self.profile.tokens_per_s, 2),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "answers": self.answers,
            "streamed": self.streamed,
            "ttft_ms": round(self.profile.ttft_s * 1000, 3),
            "tokens_per_s": None
            if math.isinf(self.profile.tokens_per_s)
            else round(self.profile.tokens_per_s, 3),
            "latency": self.entry(),
        }


def measured_latency(store: AnswerStore) -> list[MeasuredLatency]:
    """Each model's medians over its successful answers (failed calls say nothing about speed)."""
    samples: dict[str, list[LatencySample]] = defaultdict(list)
    for answer in store.answers():
        if answer.ok and answer.output_tokens is not None and not answer.usage_estimated:
            samples[answer.model].append(LatencySample(answer.latency_s, answer.ttft_s, answer.output_tokens))
    out = []
    for model, measured in sorted(samples.items()):
        profile = profile_from_samples(measured)
        if profile is not None:
            streamed = sum(1 for s in measured if s.ttft_s is not None)
            out.append(MeasuredLatency(model, profile, len(measured), streamed))
    return out


def write_pool_latency(pool_path: Path, measured: list[MeasuredLatency]) -> list[str]:
    """Set each measured model's ``latency:`` in the pool file (`ladder.training.pool_edit`: comments and order
    kept, the result checked to load, the file replaced atomically). Returns the models written."""
    entries = {m.model: m.entry() for m in measured}
    written: list[str] = []

    def change(document: CommentedMap, where: Path) -> None:
        for model in document.get("models") or []:
            entry = entries.get(str(model.get("name"))) if isinstance(model, CommentedMap) else None
            if entry is None:
                continue
            current = model.get("latency")
            if isinstance(current, CommentedMap):  # update in place: its comments and style stay
                for key, value in entry.items():
                    set_key(current, key, value)
            else:
                set_key(model, "latency", entry)
            written.append(str(model["name"]))

    edit_pool(pool_path, change)
    return written


def check_models(measured: list[MeasuredLatency], pool_names: Mapping[str, object]) -> list[str]:
    """Models measured in the store that the pool does not have (their entries cannot be written)."""
    missing = [m.model for m in measured if m.model not in pool_names]
    if missing and len(missing) == len(measured):
        raise ConfigError(f"none of the store's models {missing} is in the pool")
    return missing
