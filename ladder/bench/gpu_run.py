"""``ladder bench gpu``: build the GPU encoder, serve it from Triton, measure the router and the gateway, one JSON.

Stages, in order (``--until STAGE`` stops after one; the first three need no GPU and run anywhere):

- ``preflight``: nvidia-smi and a visible GPU, tritonserver and its backends, perf_analyzer, and the encoder
  engine: a ``trtexec`` TensorRT plan, else TensorRT inside ONNX Runtime (the ``tensorrt`` package), else
  ONNX Runtime's CUDA provider.
- ``configs``: the gpu repository's ``config.pbtxt`` files for that engine, written and checked (every config
  parses as Triton's ``ModelConfig``; the ensembles' tensor names and types match their models').
- ``commands``: the 128- and 512-token inputs and every perf_analyzer command line, checked against the configs.
- ``repository`` (GPU): ``ladder export --flavour gpu`` (with ``--tensorrt-plan`` for a plan), checked again.
- ``triton`` (GPU): tritonserver loads the ``router`` ensemble (explicit model control).
- ``perf_128``, ``perf_512`` (GPU): a concurrency sweep for the most decisions/s, then a constant request rate
  at 80 % of it for p50/p99; GPU utilisation sampled by nvidia-smi during each run.
- ``gateway`` (GPU): the gateway scoring on that Triton, ``POST /v1/route`` under ``ladder bench gateway``'s
  load generator, closed loop then a fixed-rate open loop at 80 %.

The JSON (``schema: "ladder.bench.gpu/1"``): ``command``, ``budget_s``, ``elapsed_s``, ``toolchain`` (what
preflight found, ``engine`` and ``engine_reason``, ``problems``), ``stages`` (one object per stage, in order:
``stage``, ``needs_gpu``, ``elapsed_s`` and one of ``ok: true`` with the stage's figures, ``skipped: reason``
or ``failed: message``), ``summary`` (per token count: ``max_decisions_per_s``, ``p50_ms``/``p99_ms`` at the
fixed rate, ``gpu_utilization_mean_pct``; ``gateway`` likewise), ``goal`` (the target and ``met``: true,
false, or null without figures) and ``figures`` (whether every GPU stage ran). Exit status: 0 with figures,
1 when a stage failed, 3 when the GPU stages were skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.bench import gpu_perf as perf
from ladder.bench.gpu_gateway import environment, measure_gateway, prompt_text
from ladder.bench.gpu_preflight import Preflight, preflight
from ladder.bench.gpu_sampler import GpuSampler, summarise
from ladder.core.atomic import partial_file
from ladder.core.checkpoint import Checkpoint
from ladder.core.encoder import EncoderInfo
from ladder.core.errors import LadderError
from ladder.core.home import encoder_dir
from ladder.export import triton_configs as cfg
from ladder.export.triton_perf import prompt_ids
from ladder.export.triton_repo import LABELS_FILE, export_repository, served_identity
from ladder.export.triton_server import TritonServer
from ladder.export.triton_validate import ModelSummary, validate_repository

SCHEMA = "ladder.bench.gpu/1"
STAGES: dict[str, bool] = {  # stage → needs a GPU
    "preflight": False,
    "configs": False,
    "commands": False,
    "repository": True,
    "triton": True,
    "perf_128": True,
    "perf_512": True,
    "gateway": True,
}
MIN_S = {"repository": 60.0, "triton": 30.0, "perf_128": 45.0, "perf_512": 45.0, "gateway": 40.0}
GOAL = {"tokens": 512, "decisions_per_s_min": 5000, "p99_ms_max": 20.0, "load_fraction": perf.LOAD_FRACTION}
ENSEMBLES = ("router", "router_text")
EXIT_FAILED, EXIT_SKIPPED = 1, 3
Log = Callable[[str], None]


@dataclass(frozen=True)
class GpuBenchOptions:
    """What to measure and where to write it."""

    checkpoint: Path
    out: Path
    pool: Path | None = None
    budget_s: float = 540.0
    until: str | None = None
    gpu: int = 0
    concurrencies: tuple[int, ...] = perf.SWEEP
    window_ms: int = perf.WINDOW_MS
    gateway_seconds: float = 8.0
    work: Path | None = None  # kept when given; a temporary folder otherwise
    command: str = "ladder bench gpu"

    def __post_init__(self) -> None:
        if self.until is not None and self.until not in STAGES:
            raise LadderError(f"--until {self.until!r}: not one of {', '.join(STAGES)}")


@dataclass
class Budget:
    """The run's time budget; a stage starts only when the time left covers it and the stages after it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def reserve_after(self, stage: str) -> float:
        names = list(STAGES)
        return sum(MIN_S.get(n, 0.0) for n in names[names.index(stage) + 1 :])


class GpuBench:
    """One run: each stage a method returning its figures; state handed on through attributes."""

    def __init__(self, options: GpuBenchOptions, log: Log) -> None:
        self.options = options
        self.budget = Budget(options.budget_s)
        self._log = log
        self.work = options.work or Path(tempfile.mkdtemp(prefix="ladder-bench-gpu-"))
        self.ckpt = Checkpoint.load(options.checkpoint)
        self.encoder_dir = encoder_dir(self.ckpt.manifest.encoder.name)
        self.info = EncoderInfo.load(self.encoder_dir)
        self.found = Preflight()
        self.models: dict[str, ModelSummary] = {}
        self.inputs: dict[int, tuple[Path, dict[str, Any]]] = {}
        self.server: TritonServer | None = None
        self.sampler: GpuSampler | None = None
        self.results: dict[str, Any] = {}

    def log(self, line: str) -> None:
        self._log(f"[{self.budget.elapsed():6.1f} s] {line}")

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(int(name.split("_")[1]) for name in STAGES if name.startswith("perf_"))

    def shape(self) -> cfg.RepoShape:
        return cfg.RepoShape("gpu", self.info.dim, len(self.ckpt.models), self.info.max_tokens)

    def run_preflight(self) -> dict[str, Any]:
        self.found = preflight()
        for problem in self.found.problems:
            self.log(f"preflight: {problem}")
        self.log(f"preflight: engine {self.found.engine or 'none'} ({self.found.engine_reason})")
        if self.found.gpus:
            self.sampler = GpuSampler(self.found.nvidia_smi or Path("nvidia-smi"), self.options.gpu).start()
        return {"gpus": list(self.found.gpus), "engine": self.found.engine}

    def run_configs(self) -> dict[str, Any]:
        engine = self.found.engine or "onnxruntime-tensorrt"  # the committed flavour, when none was found
        plan, tensorrt = engine == "tensorrt-plan", engine != "onnxruntime-cuda"
        identity = served_identity(self.info, "gpu", "fp32", plan, tensorrt=tensorrt)
        configs = cfg.repository_configs(self.shape(), identity, tensorrt_plan=plan, tensorrt=tensorrt)
        folder = self.work / "configs"
        labels = "".join(f"{m}\n" for m in self.ckpt.models)
        for name, text in configs.items():
            (folder / name).mkdir(parents=True, exist_ok=True)
            (folder / name / "config.pbtxt").write_text(text, encoding="utf-8")
            if name in ("head", *ENSEMBLES):
                (folder / name / LABELS_FILE).write_text(labels, encoding="utf-8")
        self.models = validate_repository(folder, ENSEMBLES)
        self.log(f"configs: {len(configs)} gpu configs for {engine} parse and wire up ({folder})")
        return {
            "engine": engine,
            "engine_assumed": self.found.engine is None,
            "folder": str(folder),
            "models": {m.name: m.kind for m in self.models.values()},
        }

    def _perf_binary(self) -> Path:
        return self.found.perf_analyzer or Path("perf_analyzer")

    def _commands(self, tokens: int, url: str) -> list[list[str]]:
        data, _ = self.inputs[tokens]
        report = self.work / f"perf_{tokens}.csv"
        loads = [perf.Load(concurrency=c) for c in self.options.concurrencies]
        loads.append(perf.Load(rate=1000.0))  # the real rate is known after the sweep
        return [
            perf.perf_command(self._perf_binary(), url, data, report, load, self.options.window_ms) for load in loads
        ]

    def run_commands(self) -> dict[str, Any]:
        lines: dict[str, list[str]] = {}
        for tokens in self.tokens:
            ids, mask = prompt_ids(self.encoder_dir, tokens)
            payload = perf.input_data(ids, mask)
            self.inputs[tokens] = (perf.write_input_data(self.work / f"input_{tokens}.json", payload), payload)
            commands = self._commands(tokens, "127.0.0.1:8001")
            for command in commands:
                perf.check_command(command, payload, self.models)
            lines[str(tokens)] = [" ".join(c) for c in commands]
        self.log(f"commands: {sum(map(len, lines.values()))} perf_analyzer command lines checked")
        return {"perf_analyzer": lines}

    def run_repository(self) -> dict[str, Any]:
        engine = self.found.engine
        out = self.work / "model_repository"
        trtexec = self.found.trtexec  # the NGC image keeps it off PATH, where the export looks
        path = {"PATH": f"{trtexec.parent}:{os.environ.get('PATH', '')}"} if trtexec else {}
        with environment(path):
            result = export_repository(
                self.options.checkpoint,
                out,
                flavour="gpu",
                tensorrt_plan=engine == "tensorrt-plan",
                tensorrt=engine != "onnxruntime-cuda",
                log=lambda line: self.log(f"repository: {line}"),
            )
        validate_repository(out, ENSEMBLES)
        return {"path": str(out), "engine": engine, "parity_max_diff": result.parity_max_diff}

    def run_triton(self) -> dict[str, Any]:
        assert self.found.tritonserver is not None
        self.server = TritonServer(
            self.work / "model_repository",
            log_path=self.work / "tritonserver.log",
            binary=self.found.tritonserver,
            extra_args=["--model-control-mode=explicit", f"--load-model={perf.MODEL}"],
        )
        started = time.monotonic()
        self.server.start(timeout=max(30.0, self.budget.left() - self.budget.reserve_after("triton")))
        self.log(f"triton: {perf.MODEL} ready at {self.server.grpc_url}")
        return {"grpc_url": self.server.grpc_url, "ready_s": round(time.monotonic() - started, 1)}

    def _window(self, start: float, end: float) -> dict[str, Any]:
        return self.sampler.window(start, end) if self.sampler else summarise([])

    def run_perf(self, tokens: int) -> dict[str, Any]:
        assert self.server is not None
        data, _ = self.inputs[tokens]
        report = self.work / f"perf_{tokens}.csv"
        stage = f"perf_{tokens}"

        def measure(load: perf.Load) -> dict[str, Any]:
            assert self.server is not None
            timeout = max(10.0, self.budget.left() - self.budget.reserve_after(stage))
            command = perf.perf_command(
                self._perf_binary(), self.server.grpc_url, data, report, load, self.options.window_ms
            )
            started = time.monotonic()
            figures = perf.run_perf(command, self.found.perf_env, report, timeout)
            point = {**load.report(), **figures, "gpu": self._window(started, time.monotonic())}
            self.log(f"{stage}: {load.report()} → {figures}")
            return point

        def go_on() -> bool:
            return self.budget.left() - self.budget.reserve_after(stage) > 20 + 3 * self.options.window_ms / 1000

        points = perf.sweep(measure, self.options.concurrencies, go_on)
        best = max(points, key=lambda p: p["decisions_per_s"])
        at_load = measure(perf.Load(rate=perf.LOAD_FRACTION * best["decisions_per_s"]))
        return {"tokens": tokens, "sweep": points, "max": best, "at_load": at_load}

    def run_gateway(self) -> dict[str, Any]:
        assert self.server is not None
        from ladder.core.pool import load_pool
        from ladder.core.router import default_pool_path

        prompts = {}
        for tokens in self.tokens:
            text, length = prompt_text(self.encoder_dir, tokens)
            prompts[length] = text
        pool = load_pool(self.options.pool or default_pool_path())
        figures = measure_gateway(
            pool,
            self.server.grpc_url,
            self.options.checkpoint,
            prompts,
            self.options.gateway_seconds,
            perf.LOAD_FRACTION,
            self._window,
            self.log,
        )
        return {"path": "/v1/route", "by_tokens": figures}

    def stage(self, name: str) -> dict[str, Any]:
        if name.startswith("perf_"):
            return self.run_perf(int(name.split("_")[1]))
        method: Callable[[], dict[str, Any]] = getattr(self, f"run_{name}")
        return method()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.sampler is not None:
            self.sampler.stop()
        if self.options.work is None:
            shutil.rmtree(self.work, ignore_errors=True)


def _skip_reason(bench: GpuBench, name: str, stopped: str | None, failed: str | None) -> str | None:
    if stopped:
        return stopped
    if STAGES[name] and not bench.found.ready:
        problems = bench.found.problems
        more = f" (+{len(problems) - 1} more in toolchain.problems)" if len(problems) > 1 else ""
        return f"needs the GPU run, which cannot start: {problems[0]}{more}"
    if failed:
        return f"{failed} failed"
    if STAGES[name] and bench.budget.left() < MIN_S[name] + bench.budget.reserve_after(name):
        return f"time budget spent ({bench.budget.left():.0f} s left of {bench.budget.seconds:.0f} s)"
    return None


def run_stages(bench: GpuBench) -> list[dict[str, Any]]:
    """Every stage in order: run, skipped (with why) or failed (with the error); never raises a LadderError."""
    records: list[dict[str, Any]] = []
    stopped: str | None = None
    failed: str | None = None
    for name, needs_gpu in STAGES.items():
        record: dict[str, Any] = {"stage": name, "needs_gpu": needs_gpu}
        reason = _skip_reason(bench, name, stopped, failed)
        started = time.monotonic()
        if reason is not None:
            record["skipped"] = reason
            bench.log(f"{name}: skipped: {reason}")
        else:
            bench.log(f"{name}: start")
            try:
                record |= {"ok": True, **bench.stage(name)}
            except (LadderError, OSError, RuntimeError, ValueError) as exc:
                record["failed"] = f"{type(exc).__name__}: {exc}"
                failed = failed or name
                bench.log(f"{name}: failed: {exc}")
        record["elapsed_s"] = round(time.monotonic() - started, 2)
        records.append(record)
        if bench.options.until == name and stopped is None:
            stopped = f"stopped after {name} (--until {name})"
    return records


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures a reader compares: per token count and for the gateway."""
    out: dict[str, Any] = {}
    for record in records:
        if record["stage"].startswith("perf_") and record.get("ok"):
            at_load = record["at_load"]
            out[str(record["tokens"])] = {
                "max_decisions_per_s": record["max"]["decisions_per_s"],
                "at_load_rate_per_s": at_load["rate_per_s"],
                "p50_ms": at_load["p50_ms"],
                "p99_ms": at_load["p99_ms"],
                "gpu_utilization_mean_pct": record["max"]["gpu"]["utilization_mean_pct"],
            }
        if record["stage"] == "gateway" and record.get("ok"):
            out["gateway"] = {
                tokens: {
                    "max_decisions_per_s": f["closed_loop"]["decisions_per_s"],
                    "p50_ms": f["open_loop"]["p50_ms"],
                    "p99_ms": f["open_loop"]["p99_ms"],
                }
                for tokens, f in record["by_tokens"].items()
            }
    return out


def goal(figures: dict[str, Any]) -> dict[str, Any]:
    """The target on one H100 and whether these figures meet it (None without figures)."""
    at = figures.get(str(GOAL["tokens"]))
    met = None
    if at is not None:
        met = at["max_decisions_per_s"] >= GOAL["decisions_per_s_min"] and at["p99_ms"] <= GOAL["p99_ms_max"]
    return {**GOAL, "met": met}


def run_gpu_bench(options: GpuBenchOptions, log: Log = print) -> tuple[dict[str, Any], int]:
    """Run the stages, write the JSON to ``options.out``; (report, exit status)."""
    bench = GpuBench(options, log)
    try:
        records = run_stages(bench)
    finally:
        bench.close()
    figures = summary(records)
    gpu_stages = [r for r in records if r["needs_gpu"]]
    has_figures = all(r.get("ok") for r in gpu_stages)
    report = {
        "schema": SCHEMA,
        "command": options.command,
        "budget_s": options.budget_s,
        "elapsed_s": round(bench.budget.elapsed(), 1),
        "checkpoint": str(options.checkpoint),
        "encoder": bench.info.name,
        "toolchain": bench.found.report(),
        "stages": records,
        "summary": figures,
        "goal": goal(figures),
        "figures": has_figures,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    with partial_file(options.out) as partial:
        partial.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    status = 0 if has_figures else EXIT_FAILED if any("failed" in r for r in records) else EXIT_SKIPPED
    log(f"wrote {options.out} ({'figures' if has_figures else 'no GPU figures'}; exit {status})")
    return report, status
