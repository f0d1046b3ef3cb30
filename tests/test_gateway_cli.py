"""`ladder serve` and `ladder bench gateway` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from ladder.bench.gateway import bench_gateway, stub_pool
from ladder.core.loopback import free_port, stop_process, wait_until_ready
from ladder.core.pool import load_pool

pytest_plugins = ["gateway_support.fixtures"]

LADDER = str(Path(sys.executable).with_name("ladder"))


def test_serve_starts_the_gateway_from_flags_and_environment(test_pool: Path) -> None:
    port = free_port()
    env = {**os.environ, "LADDER_API_KEYS": "cli-test-key-0123456789", "LADDER_LOG_LEVEL": "warning"}
    process = subprocess.Popen([LADDER, "serve", "--pool", str(test_pool), "--port", str(port)], env=env)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", process, None, 60, "ladder serve")
        models = httpx.get(
            f"http://127.0.0.1:{port}/v1/models", headers={"authorization": "Bearer cli-test-key-0123456789"}
        )
        assert models.json()["data"][0]["id"] == "ladder"
    finally:
        stop_process(process, 15)


def test_serve_refuses_to_start_without_keys(test_pool: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADDER_")}
    result = subprocess.run(
        [LADDER, "serve", "--pool", str(test_pool)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "api_keys is empty" in result.stderr


def test_bench_gateway_reports_the_promised_fields(test_pool: Path) -> None:
    report = bench_gateway(
        load_pool(test_pool),
        clients=4,
        requests=200,
        single_requests=20,
        decision_repeats=20,
        encoder_batches=(4,),
        open_seconds=1.0,
        reference_seconds=0.5,
    )
    assert set(report["single_client"]) >= {"added_p50_ms", "decision_p50_ms"}
    concurrent = report["concurrent"]
    assert concurrent["clients"] == 4 and concurrent["requests"] == 200 and concurrent["errors"] == 0
    assert concurrent["throughput_rps"] > 0 and concurrent["encoder_batched_throughput_rps"] > 0
    rounds = concurrent["rounds"]  # each round between two measurements of the bare encoder
    assert len(rounds) == 5 and all(r["encoder_before_rps"] > 0 and r["encoder_after_rps"] > 0 for r in rounds)
    assert concurrent["throughput_vs_encoder"] == pytest.approx(
        float(np.median([r["throughput_vs_encoder"] for r in rounds])), abs=1e-3
    )
    assert rounds[1]["encoder_before_rps"] == rounds[0]["encoder_after_rps"]
    assert concurrent["encoder_setting"]["batch"] == 4
    used = concurrent["cpu_ms_per_request"]  # /proc is there on the machines the tests run on
    assert used["gateway"] > 0 and used["total"] == pytest.approx(
        used["gateway"] + used["stub"] + used["load_client"], abs=0.05
    )
    assert 0 < concurrent["cpu_vs_encoder"] < 1.5
    opened = report["open_loop"]  # the fields are pinned in tests/test_loadgen.py against docs/bench.md
    assert opened["sent"] + opened["dropped_in_flight_cap"] + opened["unsent_past_max_seconds"] > 0
    assert opened["admitted"] + opened["refused_429"] + opened["errors"] == opened["sent"]
    assert opened["errors"] == 0 and opened["latency_ms"]["p99"] >= opened["latency_ms"]["p50"]
    json.dumps(report)


def test_the_bench_pool_points_every_model_at_the_stub(test_pool: Path) -> None:
    data = stub_pool(load_pool(test_pool), "http://127.0.0.1:1")
    assert {m["upstream"]["base_url"] for m in data["models"]} == {"http://127.0.0.1:1/v1"}
    assert all("api_key_env" not in m["upstream"] for m in data["models"])
