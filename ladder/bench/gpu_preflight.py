"""Preflight of ``ladder bench gpu``: the GPU, a tritonserver with GPU backends, perf_analyzer, and the encoder
engine this machine can build (TensorRT ``trtexec``, else the ``tensorrt`` package, else ONNX Runtime CUDA)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ladder.export.triton_perf import PerfAnalyzerMissing, perf_analyzer
from ladder.export.triton_server import TritonNotInstalled, find_tritonserver

Engine = Literal["tensorrt-plan", "onnxruntime-tensorrt", "onnxruntime-cuda"]
# where the NGC images put what is not on PATH
TRITONSERVER_PLACES = (Path("/opt/tritonserver/bin/tritonserver"),)
TRTEXEC_PLACES = (Path("/usr/src/tensorrt/bin/trtexec"),)
GPU_QUERY = ("--query-gpu=name,memory.total", "--format=csv,noheader,nounits")


@dataclass(frozen=True)
class Preflight:
    """What was found, the engine chosen and why, and every reason the GPU stages cannot run."""

    gpus: tuple[str, ...] = ()
    nvidia_smi: Path | None = None
    tritonserver: Path | None = None
    backends: tuple[str, ...] = ()
    perf_analyzer: Path | None = None
    perf_env: dict[str, str] = field(default_factory=dict, repr=False)
    trtexec: Path | None = None
    tensorrt_package: str | None = None
    onnxruntime_providers: tuple[str, ...] = ()
    engine: Engine | None = None
    engine_reason: str = ""
    problems: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        """Whether every GPU stage has what it needs."""
        return not self.problems

    def report(self) -> dict[str, Any]:
        """JSON-ready (paths as text, the environment left out)."""
        return {
            "gpus": list(self.gpus),
            "nvidia_smi": _text(self.nvidia_smi),
            "tritonserver": _text(self.tritonserver),
            "triton_backends": list(self.backends),
            "perf_analyzer": _text(self.perf_analyzer),
            "trtexec": _text(self.trtexec),
            "tensorrt_package": self.tensorrt_package,
            "onnxruntime_providers": list(self.onnxruntime_providers),
            "engine": self.engine,
            "engine_reason": self.engine_reason,
            "problems": list(self.problems),
        }


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _first(candidates: list[Path | None]) -> Path | None:
    return next((c for c in candidates if c is not None and os.access(c, os.X_OK)), None)


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def find_gpus(nvidia_smi: Path) -> tuple[tuple[str, ...], str | None]:
    """("name, total MiB" per GPU, None) or ((), why none is visible)."""
    try:
        done = subprocess.run([str(nvidia_smi), *GPU_QUERY], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (), f"{nvidia_smi} did not answer: {exc}"
    gpus = tuple(line.strip() for line in done.stdout.splitlines() if line.strip())
    if done.returncode != 0 or not gpus:
        said = (done.stderr or done.stdout).strip().splitlines()
        return (), f"nvidia-smi sees no GPU ({said[0] if said else f'exit {done.returncode}'})"
    return gpus, None


def find_triton() -> Path | None:
    """``$LADDER_TRITONSERVER``, ``tritonserver`` on PATH, the NGC image's, else pytriton's (python only)."""
    named = os.environ.get("LADDER_TRITONSERVER", "").strip()
    found = _first([Path(named) if named else None, _which("tritonserver"), *TRITONSERVER_PLACES])
    if found is not None:
        return found
    try:
        return find_tritonserver()
    except TritonNotInstalled:
        return None


def triton_backends(binary: Path) -> tuple[str, ...]:
    """The backend folders beside ``binary`` (``<server>/backends/<name>``)."""
    folder = binary.resolve().parent.parent / "backends"
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_dir())) if folder.is_dir() else ()


def find_perf_analyzer() -> tuple[Path | None, dict[str, str]]:
    """``perf_analyzer`` on PATH (the NGC SDK image), else ``scripts/install_perf_analyzer.sh``'s."""
    on_path = _which("perf_analyzer")
    if on_path is not None:
        return on_path, dict(os.environ)
    try:
        return perf_analyzer()
    except PerfAnalyzerMissing:
        return None, {}


def tensorrt_package() -> str | None:
    """The installed ``tensorrt`` Python package's version, or None."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    for name in ("tensorrt", "tensorrt-cu12", "tensorrt-cu11"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown version"


def onnxruntime_providers() -> tuple[str, ...]:
    """This Python's ONNX Runtime execution providers (reported; Triton uses its own backend's)."""
    try:
        import onnxruntime
    except ImportError:
        return ()
    return tuple(onnxruntime.get_available_providers())


def choose_engine(trtexec: Path | None, tensorrt: str | None, backends: tuple[str, ...]) -> tuple[Engine | None, str]:
    """The first engine whose tools are here: a trtexec plan, TensorRT in ONNX Runtime, ONNX Runtime CUDA."""
    if "onnxruntime" not in backends:
        return None, f"tritonserver has no onnxruntime backend (backends: {', '.join(backends) or 'none'})"
    if trtexec is not None and "tensorrt" in backends:
        return "tensorrt-plan", f"trtexec at {trtexec}: the encoder is built into a TensorRT FP16 plan"
    passed = f"trtexec at {trtexec} but no tensorrt backend; " if trtexec is not None else "no trtexec; "
    if tensorrt is not None:
        return "onnxruntime-tensorrt", (
            f"{passed}tensorrt {tensorrt} installed: Triton's onnxruntime backend builds the TensorRT FP16 "
            "engine when it loads the encoder"
        )
    return "onnxruntime-cuda", f"{passed}no tensorrt package: ONNX Runtime's CUDA provider, without TensorRT"


def preflight() -> Preflight:
    """Look for everything the GPU stages need; each thing missing becomes one line in ``problems``."""
    problems = []
    nvidia_smi = _which("nvidia-smi")
    gpus: tuple[str, ...] = ()
    if nvidia_smi is None:
        problems.append("no GPU: nvidia-smi is not on PATH (no NVIDIA driver on this machine)")
    else:
        gpus, why = find_gpus(nvidia_smi)
        if why:
            problems.append(f"no GPU: {why}")
    triton = find_triton()
    backends = triton_backends(triton) if triton else ()
    if triton is None:
        problems.append(
            "no tritonserver ($LADDER_TRITONSERVER, PATH, /opt/tritonserver): use the NGC tritonserver image"
        )
    perf, perf_env = find_perf_analyzer()
    if perf is None:
        problems.append("no perf_analyzer on PATH or in .venv-perf: run scripts/install_perf_analyzer.sh")
    trtexec = _first([_which("trtexec"), *TRTEXEC_PLACES])
    tensorrt = tensorrt_package()
    engine, reason = choose_engine(trtexec, tensorrt, backends)
    if triton is not None and engine is None:
        problems.append(f"{triton}: {reason}; the gpu repository needs it (the NGC tritonserver image has it)")
    return Preflight(
        gpus=gpus,
        nvidia_smi=nvidia_smi,
        tritonserver=triton,
        backends=backends,
        perf_analyzer=perf,
        perf_env=perf_env,
        trtexec=trtexec,
        tensorrt_package=tensorrt,
        onnxruntime_providers=onnxruntime_providers(),
        engine=engine,
        engine_reason=reason,
        problems=tuple(problems),
    )
