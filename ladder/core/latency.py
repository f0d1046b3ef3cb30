"""Expected latency per model: time to first token plus the expected output at the model's decode speed."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ladder.core.pool import ModelSpec

MIN_TOKENS_FOR_SPEED = 8  # shorter answers say little about decode speed


@dataclass(frozen=True)
class LatencyProfile:
    """A model's time to first token (seconds) and decode speed (output tokens per second)."""

    ttft_s: float
    tokens_per_s: float

    def expected_ms(self, output_tokens: float) -> float:
        """Milliseconds until an answer of ``output_tokens`` tokens is complete."""
        return 1000.0 * (self.ttft_s + output_tokens / max(self.tokens_per_s, 1e-6))


@dataclass(frozen=True)
class LatencySample:
    """One measured call: total seconds, seconds to the first token (None when unknown), output tokens."""

    total_s: float
    ttft_s: float | None
    output_tokens: int


def _speed(sample: LatencySample) -> float | None:
    ttft = sample.ttft_s if sample.ttft_s is not None else 0.0
    decode_s = sample.total_s - ttft
    if sample.output_tokens < MIN_TOKENS_FOR_SPEED or decode_s <= 0:
        return None
    return sample.output_tokens / decode_s


def profile_from_samples(samples: Iterable[LatencySample]) -> LatencyProfile | None:
    """Medians over measured calls (robust to a few stalls); None when there is nothing to learn from.

    Without a streamed time to first token, the whole call is counted as time to first token and the decode
    speed is left unknown (infinite), which never under-estimates a short answer's latency.
    """
    measured = list(samples)
    if not measured:
        return None
    ttfts = [s.ttft_s for s in measured if s.ttft_s is not None]
    speeds = [v for v in (_speed(s) for s in measured if s.ttft_s is not None) if v is not None]
    if not ttfts:
        return LatencyProfile(statistics.median(s.total_s for s in measured), float("inf"))
    return LatencyProfile(statistics.median(ttfts), statistics.median(speeds) if speeds else float("inf"))


class LatencyTracker:
    """Per-model latency estimates: seeded from collected data or the pool file, updated from live calls.

    Each live call moves the estimate by ``alpha`` towards what was measured (an exponentially weighted
    mean), so a model that slows down is avoided within a few calls, and one that recovers comes back.
    Thread-safe: the gateway updates it from its event loop and reads it while deciding.
    """

    def __init__(self, priors: Mapping[str, LatencyProfile] | None = None, alpha: float = 0.3) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must lie in (0, 1]")
        self.alpha = alpha
        self._profiles: dict[str, LatencyProfile] = dict(priors or {})
        self._lock = threading.Lock()

    def profile(self, model: str) -> LatencyProfile | None:
        with self._lock:
            return self._profiles.get(model)

    def snapshot(self) -> dict[str, LatencyProfile]:
        with self._lock:
            return dict(self._profiles)

    def observe(self, model: str, sample: LatencySample) -> LatencyProfile:
        """Fold one measured call into ``model``'s estimate and return the new estimate."""
        with self._lock:
            old = self._profiles.get(model)
            if sample.ttft_s is None and old is not None and old.tokens_per_s != float("inf"):
                # a non-streamed call: what the decode at the known speed does not explain is the wait
                waited = max(0.0, sample.total_s - sample.output_tokens / old.tokens_per_s)
                sample = LatencySample(sample.total_s, waited, sample.output_tokens)
            measured = profile_from_samples([sample])
            assert measured is not None
            if old is None:
                new = measured
            else:
                ttft = old.ttft_s + self.alpha * (measured.ttft_s - old.ttft_s)
                speed = old.tokens_per_s
                if measured.tokens_per_s != float("inf"):
                    speed = (
                        measured.tokens_per_s
                        if speed == float("inf")
                        else speed + self.alpha * (measured.tokens_per_s - speed)
                    )
                new = LatencyProfile(ttft, speed)
            self._profiles[model] = new
            return new

    def expected_ms(self, model: str, output_tokens: float) -> float | None:
        """Expected milliseconds for ``model`` to finish an answer of ``output_tokens``; None when unknown."""
        profile = self.profile(model)
        return None if profile is None else profile.expected_ms(output_tokens)

    def exclusions(self, output_tokens: Mapping[str, float], budget_ms: float) -> dict[str, str]:
        """Models expected to miss ``budget_ms``, each with the reason. A model with no estimate is kept."""
        excluded: dict[str, str] = {}
        for model, tokens in output_tokens.items():
            expected = self.expected_ms(model, tokens)
            if expected is not None and expected > budget_ms:
                excluded[model] = (
                    f"expected latency {expected:.0f} ms (about {tokens:.0f} output tokens) exceeds the "
                    f"request's budget of {budget_ms:.0f} ms"
                )
        return excluded


def pool_priors(models: Iterable[ModelSpec]) -> dict[str, LatencyProfile]:
    """The latency the pool file states per model (``latency: {ttft_ms, tokens_per_s}``), where it does."""
    return {
        m.name: LatencyProfile(m.latency.ttft_ms / 1000.0, m.latency.tokens_per_s)
        for m in models
        if m.latency is not None
    }
