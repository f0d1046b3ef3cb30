"""``ladder bench gpu`` without a GPU: every stage up to the first that needs one runs, the rest say why not."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import triton_helpers as th

from ladder.bench import gpu_perf as perf
from ladder.bench.gpu_preflight import choose_engine
from ladder.bench.gpu_run import STAGES, GpuBenchOptions, run_gpu_bench
from ladder.bench.gpu_sampler import parse_sample, summarise
from ladder.core.errors import LadderError
from ladder.defaults import default_checkpoint_path
from ladder.export.triton_validate import RepositoryInvalid, validate_repository

ROOT = Path(__file__).resolve().parent.parent
GPU_STAGES = [name for name, needs_gpu in STAGES.items() if needs_gpu]


@pytest.fixture
def no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``nvidia-smi`` first on PATH that fails as it does on a machine whose driver sees no GPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver.'\nexit 9\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def _stages(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {record["stage"]: record for record in report["stages"]}


def test_cli_runs_the_cpu_stages_and_skips_the_gpu_ones_with_the_reason(no_gpu: Path) -> None:
    th.require_encoder()
    from typer.testing import CliRunner

    from ladder.cli.main import app

    out, work = no_gpu / "gpu.json", no_gpu / "work"
    result = CliRunner().invoke(app, ["bench", "gpu", "--out", str(out), "--work", str(work)])
    assert result.exit_code == 3, result.output  # no figures: never success
    report = json.loads(out.read_text())
    stages = _stages(report)
    assert list(stages) == list(STAGES)
    assert report["toolchain"]["problems"][0].startswith("no GPU: nvidia-smi sees no GPU (NVIDIA-SMI has failed")
    assert all(stages[name].get("ok") for name in ("preflight", "configs", "commands"))
    for name in GPU_STAGES:
        assert stages[name]["skipped"].startswith("needs the GPU run, which cannot start: no GPU"), name
    assert all(record["elapsed_s"] >= 0 for record in report["stages"])
    assert report["figures"] is False and report["summary"] == {} and report["goal"]["met"] is None
    assert "needs the GPU run" in result.output and "exit 3" in result.output

    # the configs stage wrote the gpu repository's configs: they parse and the ensembles wire up
    configs = Path(stages["configs"]["folder"])
    models = validate_repository(configs, ("router", "router_text"))
    assert models["encoder"].kind == "onnxruntime" and models["router"].kind == "ensemble"
    assert stages["configs"]["engine_assumed"] is True
    for name in ("encoder", "head", "router", "router_text", "tokenizer"):  # what `ladder export` commits
        committed = ROOT / "model_repository" / name / "config.pbtxt"
        assert (configs / name / "config.pbtxt").read_text() == committed.read_text(), name

    # the perf_analyzer command lines: a concurrency sweep and a constant-rate run per token count
    lines = stages["commands"]["perf_analyzer"]
    assert set(lines) == {"128", "512"}
    for tokens, commands in lines.items():
        assert len(commands) == len(perf.SWEEP) + 1
        assert all(f"input_{tokens}.json" in c and " -m router " in c for c in commands)
        assert "--concurrency-range 8:8" in commands[0]
        assert "--request-rate-range" in commands[-1] and "--request-distribution constant" in commands[-1]
        data = json.loads((work / f"input_{tokens}.json").read_text())["data"][0]
        assert data["input_ids"]["shape"] == [int(tokens)] and sum(data["attention_mask"]["content"]) == int(tokens)


def test_until_stops_after_the_named_stage(no_gpu: Path) -> None:
    th.require_encoder()
    out = no_gpu / "gpu.json"
    options = GpuBenchOptions(default_checkpoint_path(), out, until="configs", work=no_gpu / "work")
    report, status = run_gpu_bench(options, log=lambda _: None)
    stages = _stages(report)
    assert status == 3 and json.loads(out.read_text()) == report
    assert stages["configs"]["ok"] and stages["commands"]["skipped"] == "stopped after configs (--until configs)"
    assert all("--until configs" in stages[name]["skipped"] for name in GPU_STAGES)
    with pytest.raises(LadderError, match="--until 'perf'"):
        GpuBenchOptions(default_checkpoint_path(), out, until="perf")


def test_validation_names_a_miswired_ensemble_and_a_misspelt_field(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for name in ("encoder", "head", "router"):
        (repo / name).mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text((ROOT / "model_repository" / name / "config.pbtxt").read_text())
    validate_repository(repo)
    router = repo / "router" / "config.pbtxt"
    router.write_text(
        router.read_text().replace('key: "embedding" value: "embedding"', 'key: "embeddings" value: "embedding"', 1)
    )
    with pytest.raises(RepositoryInvalid, match=r"encoder has no output 'embeddings'.*'embedding' is neither"):
        validate_repository(repo)
    head = repo / "head" / "config.pbtxt"
    head.write_text(head.read_text().replace("max_batch_size", "max_batch"))
    with pytest.raises(RepositoryInvalid, match="max_batch"):
        validate_repository(repo)


def test_check_command_refuses_inputs_the_ensemble_does_not_take(tmp_path: Path) -> None:
    models = validate_repository(ROOT / "model_repository", ("router",))
    data = {
        "data": [{"input_ids": {"content": [1, 2], "shape": [2]}, "attention_mask": {"content": [1, 1], "shape": [2]}}]
    }
    command = perf.perf_command(
        Path("perf_analyzer"), "h:1", tmp_path / "d.json", tmp_path / "r.csv", perf.Load(concurrency=4)
    )
    perf.check_command(command, data, models)
    wrong = {"data": [{"ids": {"content": [1, 2], "shape": [2]}, "attention_mask": {"content": [1, 1], "shape": [3]}}]}
    with pytest.raises(LadderError, match=r"input data has \['attention_mask', 'ids'\].*does not fit"):
        perf.check_command(command, wrong, models)
    with pytest.raises(LadderError, match="no such model"):
        perf.check_command([("routr" if part == "router" else part) for part in command], data, models)
    with pytest.raises(ValueError, match="not both"):
        perf.Load(concurrency=2, rate=10.0)


def test_report_parsing_and_the_sweep_stopping_where_throughput_stops_growing() -> None:
    csv = "Concurrency,Inferences/Second,p50 latency,p99 latency\n64,5321.5,9800,17250\n"
    assert perf.parse_report(csv) == {"decisions_per_s": 5321.5, "p50_ms": 9.8, "p99_ms": 17.25}
    throughput = {8: 1000.0, 16: 2000.0, 32: 2900.0, 64: 2950.0, 128: 2960.0, 256: 9999.0}
    points = perf.sweep(lambda load: {"decisions_per_s": throughput[load.concurrency or 0]})
    assert [p["decisions_per_s"] for p in points] == [1000.0, 2000.0, 2900.0, 2950.0, 2960.0]


def test_nvidia_smi_samples_and_engine_choice() -> None:
    assert parse_sample("87, 10240\n") == (87.0, 10240.0)
    assert parse_sample("[N/A], 10240") is None and parse_sample("") is None
    assert summarise([(80.0, 1000.0), (90.0, 1200.0)]) == {
        "samples": 2, "utilization_mean_pct": 85.0, "utilization_max_pct": 90.0, "memory_max_mib": 1200.0
    }  # fmt: skip
    both = ("onnxruntime", "python", "tensorrt")
    assert choose_engine(Path("/usr/bin/trtexec"), None, both)[0] == "tensorrt-plan"
    assert choose_engine(Path("/usr/bin/trtexec"), "10.3", ("onnxruntime",))[0] == "onnxruntime-tensorrt"
    assert choose_engine(None, None, both)[0] == "onnxruntime-cuda"
    engine, reason = choose_engine(None, "10.3", ("python",))
    assert engine is None and "no onnxruntime backend" in reason
