"""Chaos run: a gateway process, upstreams failing at random, many clients; prints JSON, exits 1 on a failure.

    .venv/bin/python scripts/chaos.py --requests 2000 --clients 32 --deadline 4

The pool is the shipped default with every model's upstream pointed at one misbehaving fake
(``bench.faulty_upstream``): 5xx, 429 with Retry-After, hangs, resets before an answer and mid-stream,
unsolicited 100-continue, close-delimited bodies and CRLFs split across reads, drawn per call. Settings
are the defaults except the deadline. See ``bench.chaos`` for what must hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from bench.chaos import WEIGHTS, drive, verdict
from bench.faulty_upstream import RawUpstream, random_chooser
from ladder.pool import load_pool
from ladder.router import default_pool_path

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--deadline", type=float, default=4.0, help="The gateway's deadline_s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pool = load_pool(default_pool_path())
    with RawUpstream() as upstream, tempfile.TemporaryDirectory() as scratch:
        upstream.chooser = random_chooser(args.seed, WEIGHTS)
        data = pool.model_dump(mode="json")
        for model in data["models"]:
            model["upstream"] = {"base_url": f"{upstream.url}/{model['name']}/v1", "model": model["name"]}
        pool_path, audit_path = Path(scratch) / "pool.yaml", Path(scratch) / "audit.jsonl"
        pool_path.write_text(yaml.safe_dump(data), encoding="utf-8")
        port = _free_port()
        env = {
            **os.environ,
            "LADDER_POOL": str(pool_path),
            "LADDER_HOST": HOST,
            "LADDER_PORT": str(port),
            "LADDER_AUTH_DISABLED": "true",
            "LADDER_LOG_LEVEL": "error",
            "LADDER_DEADLINE_S": str(args.deadline),
            "LADDER_AUDIT_LOG": str(audit_path),
        }
        env.pop("LADDER_CONFIG", None)
        gateway = subprocess.Popen([sys.executable, "-m", "service"], env=env)
        try:
            _wait_ready(f"http://{HOST}:{port}/readyz", gateway)
            outcomes, seconds = asyncio.run(drive(f"http://{HOST}:{port}", args.requests, args.clients))
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
        lines = len(audit_path.read_text(encoding="utf-8").splitlines()) if audit_path.exists() else 0
        report = verdict(outcomes, seconds, list(upstream.log), lines, args.deadline)
    report["clients"] = args.clients
    print(json.dumps(report))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
