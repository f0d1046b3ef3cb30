"""GPU utilisation and memory sampled by ``nvidia-smi`` while ``ladder bench gpu`` measures, per time window."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

QUERY = ("--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits")
PERIOD_MS = 250


def sample_command(nvidia_smi: Path, gpu: int, period_ms: int = PERIOD_MS) -> list[str]:
    """``nvidia-smi`` printing one ``utilization %, memory MiB`` line for ``gpu`` every ``period_ms``."""
    return [str(nvidia_smi), *QUERY, f"--id={gpu}", f"--loop-ms={period_ms}"]


def parse_sample(line: str) -> tuple[float, float] | None:
    """(utilisation %, memory used MiB) from one line, or None for anything else (``[N/A]``, blank)."""
    parts = [part.strip() for part in line.split(",")]
    if len(parts) != 2:
        return None
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        return None


class GpuSampler:
    """Runs the sampling ``nvidia-smi`` in the background; ``window(start, end)`` summarises a stretch of it
    (``time.monotonic()`` seconds)."""

    def __init__(self, nvidia_smi: Path, gpu: int = 0, period_ms: int = PERIOD_MS) -> None:
        self.command = sample_command(nvidia_smi, gpu, period_ms)
        self.samples: list[tuple[float, float, float]] = []  # (monotonic s, utilisation %, memory MiB)
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> GpuSampler:
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self._reader = threading.Thread(target=self._read, name="nvidia-smi", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            sample = parse_sample(line)
            if sample is not None:
                self.samples.append((time.monotonic(), *sample))

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(5)

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Mean and max utilisation and max memory over the samples taken in [start, end]."""
        return summarise([(u, m) for t, u, m in list(self.samples) if start <= t <= end])

    def __enter__(self) -> GpuSampler:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def summarise(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """JSON-ready summary of (utilisation %, memory MiB) samples; None where there were none."""
    if not samples:
        return {"samples": 0, "utilization_mean_pct": None, "utilization_max_pct": None, "memory_max_mib": None}
    utilisation = [u for u, _ in samples]
    return {
        "samples": len(samples),
        "utilization_mean_pct": round(sum(utilisation) / len(utilisation), 1),
        "utilization_max_pct": max(utilisation),
        "memory_max_mib": max(m for _, m in samples),
    }
