"""A circuit breaker per upstream: consecutive failures keep it out for a cool-down, then one trial call."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0
    trial_in_flight: bool = False


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
        self._circuits[name] = _Circuit()

    def failure(self, name: str) -> None:
        circuit = self._circuit(name)
        circuit.failures += 1
        circuit.trial_in_flight = False
        if circuit.failures >= self.threshold:
            circuit.open_until = self._clock() + self.cooldown_s

    def release(self, name: str) -> None:
        """A call ended with neither verdict (cancelled, or the client's own error)."""
        self._circuit(name).trial_in_flight = False
