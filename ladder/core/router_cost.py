"""What routing itself costs: CPU-seconds per 1,000 decisions at an instance price, beside what it saved."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# The shipped router (multilingual-e5-small int8, one ONNX Runtime thread, one decision at a time) on prompts
# of 41 and 512 tokens alternating, on an idle 2-core machine: its decisions take 8.3 and 93.3 ms (README,
# "Speed"), all of it on one thread, so about 51 CPU-seconds per 1,000. Measure your own with
# `ladder bench router-cost` or `ladder report --measure-router`.
DEFAULT_CPU_S_PER_1K = 51.0
# An illustrative on-demand price of a 2-vCPU compute instance, in USD per hour; set your own.
DEFAULT_INSTANCE_USD_PER_HOUR = 0.10
DEFAULT_INSTANCE_VCPUS = 2.0


@dataclass(frozen=True)
class RouterCost:
    """The router's own cost per decision, from its CPU time and the price of the CPUs it runs on."""

    cpu_s_per_1k: float
    instance_usd_per_hour: float = DEFAULT_INSTANCE_USD_PER_HOUR
    instance_vcpus: float = DEFAULT_INSTANCE_VCPUS
    source: str = "the shipped router's figure"

    def __post_init__(self) -> None:
        if not self.cpu_s_per_1k >= 0 or not self.instance_usd_per_hour >= 0 or not self.instance_vcpus > 0:
            raise ValueError("router cost: CPU-seconds and price must be >= 0 and vCPUs > 0")

    @property
    def usd_per_1k(self) -> float:
        """USD per 1,000 decisions: their CPU-seconds at one vCPU's share of the instance price."""
        return self.cpu_s_per_1k * self.instance_usd_per_hour / self.instance_vcpus / 3600.0

    def summary(self, requests: int, savings_usd: float) -> dict[str, Any]:
        """The report's ``router`` block: what ``requests`` decisions cost, and the savings net of it."""
        cost = requests * self.usd_per_1k / 1000.0
        return {
            **asdict(self),
            "usd_per_1k": self.usd_per_1k,
            "requests": requests,
            "cpu_s": requests * self.cpu_s_per_1k / 1000.0,
            "cost_usd": cost,
            "net_savings_usd": savings_usd - cost,
            "savings_over_cost": savings_usd / cost if cost > 0 else None,
        }
