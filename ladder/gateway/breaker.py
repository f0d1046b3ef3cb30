"""A circuit breaker per upstream: failures in a row, or its own ``Retry-After``, keep it out for a while."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0
    trial_in_flight: bool = False
    held_until: float = 0.0


class CircuitBreaker:
    """Closed -> open after ``failures`` in a row -> half-open after ``cooldown_s`` (one trial) -> closed."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def _circuit(self, name: str) -> _Circuit:
        return self._circuits.setdefault(name, _Circuit())

    def state(self, name: str) -> str:
        circuit = self._circuit(name)
        if self._clock() < circuit.held_until:
            return "open"
        if circuit.failures < self.threshold:
            return "closed"
        return "open" if self._clock() < circuit.open_until else "half-open"

    def allow(self, name: str) -> bool:
        """Whether a call may go to ``name`` now (a half-open circuit lets one trial through)."""
        circuit = self._circuit(name)
        state = self.state(name)
        if state == "closed":
            return True
        if state == "half-open" and not circuit.trial_in_flight:
            circuit.trial_in_flight = True
            return True
        return False

    def success(self, name: str) -> None:
        held = self._circuit(name).held_until
        self._circuits[name] = _Circuit(held_until=held)

    def failure(self, name: str) -> None:
        circuit = self._circuit(name)
        circuit.failures += 1
        circuit.trial_in_flight = False
        if circuit.failures >= self.threshold:
            circuit.open_until = self._clock() + self.cooldown_s

    def hold(self, name: str, seconds: float) -> None:
        """Keep ``name`` out for ``seconds`` whatever its failure count (the upstream's ``Retry-After``)."""
        circuit = self._circuit(name)
        circuit.held_until = max(circuit.held_until, self._clock() + seconds)
        circuit.trial_in_flight = False

    def held(self, name: str) -> bool:
        """Whether ``name`` asked to be left alone (``Retry-After``) and that time has not passed."""
        return self._clock() < self._circuit(name).held_until

    def release(self, name: str) -> None:
        """A call ended with neither verdict (cancelled, or the client's own error)."""
        self._circuit(name).trial_in_flight = False
