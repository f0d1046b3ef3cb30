"""Drift on real traffic: route MMLU-Pro and then LLMRouter questions through the gateway, report on each.

Usage: .venv/bin/python research/drift_demo.py [--requests 300] [--out reports/drift]

Starts `ladder serve` (the shipped pool and checkpoint) on a free loopback port with an audit log, sends
each set of questions to /v1/route (no upstream model is called), stops it, and runs `ladder report`
against the checkpoint's calibration sample; the reports (JSON, PNG) go to --out. The shipped router
was trained on MMLU-Pro, so the first window should show no drift and the second (other tasks) should.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LADDER_SHARED_DATA", ROOT.parent / "shared" / "data"))
SETS = {
    "mmlu-pro": (DATA / "mmlu_pro" / "questions.jsonl", "question"),
    "llmrouter": (DATA / "llmrouter" / "default_query_test.jsonl", "query"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def route_window(name: str, count: int, audit: Path) -> None:
    path, field = SETS[name]
    texts = [json.loads(line)[field] for line in path.open(encoding="utf-8")]
    random.Random(0).shuffle(texts)
    key, port = "demo-" + secrets.token_urlsafe(16), free_port()
    env = {**os.environ, "LADDER_API_KEYS": key, "LADDER_AUDIT_LOG": str(audit), "LADDER_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "ladder.cli", "serve"], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the gateway did not start")
            time.sleep(0.5)
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=60) as client:
            for text in texts[:count]:
                reply = client.post("/v1/route", json={"prompt": text[:4000]})
                reply.raise_for_status()
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "drift")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {}
    scratch = Path(tempfile.mkdtemp(prefix="ladder-drift-"))  # the audit logs: large, not kept
    for name in SETS:
        audit = scratch / f"audit-{name}.jsonl"
        route_window(name, args.requests, audit)
        report = args.out / f"report-{name}.json"
        done = subprocess.run(
            [sys.executable, "-m", "ladder.cli", "report", "--audit", str(audit), "--json", str(report),
             "--plot", str(args.out / f"report-{name}.png"), "--bucket", "hour"],
            cwd=ROOT, check=False,
        )  # fmt: skip
        drift = json.loads(report.read_text(encoding="utf-8"))["drift"]
        summary[name] = {
            "exit": done.returncode,
            "share_tvd": round(drift["share_tvd"], 3),
            "max_psi": round(drift["max_psi"], 3),
            "max_ks": round(drift["max_ks"], 3),
        }
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
