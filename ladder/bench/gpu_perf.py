"""perf_analyzer on the GPU ``router`` ensemble: the command lines of a concurrency point and of a fixed-rate
run, their check against the repository's configs, and the sweep that finds the most decisions per second."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladder.core.errors import LadderError
from ladder.export.triton_validate import ModelSummary

MODEL = "router"
SWEEP = (8, 16, 32, 64, 128, 256)
LOAD_FRACTION = 0.8  # the fixed-rate run offers this share of the sweep's best throughput
WINDOW_MS = 2000
STABILITY_PERCENT = 20
MAX_TRIALS = 5
SWEEP_MIN_GAIN = 0.03  # stop after two points in a row that add less than this to the best throughput


class PerfAnalyzerFailed(LadderError):
    """perf_analyzer exited non-zero or wrote no report (its output is quoted)."""


@dataclass(frozen=True)
class Load:
    """One perf_analyzer run's load: ``concurrency`` requests in flight, or a constant ``rate`` per second."""

    concurrency: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("a Load is a concurrency or a rate, not both or neither")
        if (self.concurrency or 1) < 1 or (self.rate or 1.0) <= 0:
            raise ValueError(f"{self} must be positive")

    def report(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency} if self.rate is None else {"rate_per_s": round(self.rate, 1)}


def input_data(ids: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """perf_analyzer's ``--input-data`` JSON for one batch-1 request of the ``router`` ensemble."""
    rows = {"input_ids": ids[0], "attention_mask": mask[0]}
    return {"data": [{k: {"content": v.tolist(), "shape": [len(v)]} for k, v in rows.items()}]}


def perf_command(binary: Path, url: str, data: Path, report: Path, load: Load, window_ms: int = WINDOW_MS) -> list[str]:
    """One perf_analyzer run over gRPC, asynchronous, writing its CSV ``report``."""
    options = {
        "-m": MODEL, "-u": url, "-i": "grpc", "--input-data": str(data), "-f": str(report),
        "--measurement-interval": str(window_ms), "--stability-percentage": str(STABILITY_PERCENT),
        "--max-trials": str(MAX_TRIALS),
    }  # fmt: skip
    if load.concurrency is not None:
        options["--concurrency-range"] = f"{load.concurrency}:{load.concurrency}"
    else:
        options |= {
            "--request-rate-range": f"{load.rate:.1f}:{load.rate:.1f}",
            "--request-distribution": "constant",
            "--max-threads": "64",
        }
    return [str(binary), "--async", *(part for item in options.items() for part in item)]


def _option(command: Sequence[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def check_command(command: Sequence[str], data: Mapping[str, Any], models: Mapping[str, ModelSummary]) -> None:
    """The command asks for an ensemble the repository has, with exactly its inputs, of its types and of
    a length the encoder takes; raise ``LadderError`` naming everything wrong."""
    problems = []
    model = _option(command, "-m")
    ensemble = models.get(model or "")
    if ensemble is None:
        raise LadderError(f"perf_analyzer -m {model!r}: no such model in the repository")
    request = data["data"][0]
    if set(request) != set(ensemble.inputs):
        problems.append(f"input data has {sorted(request)}, {model} takes {sorted(ensemble.inputs)}")
    for name, tensor in request.items():
        wanted = ensemble.inputs.get(name)
        if wanted is None:
            continue
        values, shape = tensor["content"], tensor["shape"]
        if len(shape) != len(wanted.dims) or len(values) != int(np.prod(shape)):
            problems.append(f"{name}: shape {shape} does not fit dims {list(wanted.dims)}")
        if wanted.dtype == "TYPE_INT64" and not all(isinstance(v, int) for v in values):
            problems.append(f"{name}: {wanted.dtype} needs integers")
    batch = int(_option(command, "-b") or 1)
    if batch > ensemble.max_batch:
        problems.append(f"-b {batch} > max_batch_size {ensemble.max_batch}")
    if ("--concurrency-range" in command) == ("--request-rate-range" in command):
        problems.append("exactly one of --concurrency-range and --request-rate-range")
    if problems:
        raise LadderError(f"perf_analyzer command for {model}: " + "; ".join(problems))


def parse_report(text: str) -> dict[str, float]:
    """Throughput (decisions/s) and p50/p99 latency (ms) from perf_analyzer's ``-f`` CSV."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise PerfAnalyzerFailed("perf_analyzer's report has no measurement row")
    row = rows[-1]
    return {
        "decisions_per_s": round(float(row["Inferences/Second"]), 1),
        "p50_ms": round(float(row["p50 latency"]) / 1000, 3),
        "p99_ms": round(float(row["p99 latency"]) / 1000, 3),
    }


def run_perf(command: Sequence[str], env: Mapping[str, str], report: Path, timeout_s: float) -> dict[str, float]:
    """Run one perf_analyzer command and read its report."""
    report.unlink(missing_ok=True)
    try:
        done = subprocess.run(
            list(command), env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PerfAnalyzerFailed(f"perf_analyzer ran past {timeout_s:.0f} s: {' '.join(command)}") from exc
    if done.returncode != 0 or not report.is_file():
        raise PerfAnalyzerFailed(
            f"perf_analyzer failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-1500:]}"
        )
    return parse_report(report.read_text())


def sweep(
    measure: Callable[[Load], dict[str, Any]],
    concurrencies: Sequence[int] = SWEEP,
    go_on: Callable[[], bool] = lambda: True,
) -> list[dict[str, Any]]:
    """Measure each concurrency in turn until throughput stops growing (two points in a row adding less
    than ``SWEEP_MIN_GAIN`` to the best) or ``go_on()`` says the time is spent; every point is returned."""
    points: list[dict[str, Any]] = []
    best, flat = 0.0, 0
    for concurrency in concurrencies:
        if points and not go_on():
            break
        point = measure(Load(concurrency=concurrency))
        points.append(point)
        gained = point["decisions_per_s"] > best * (1 + SWEEP_MIN_GAIN)
        best = max(best, point["decisions_per_s"])
        flat = 0 if gained else flat + 1
        if flat >= 2:
            break
    return points


def write_input_data(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
