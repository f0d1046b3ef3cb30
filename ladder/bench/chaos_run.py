"""Chaos run: a gateway process, upstreams failing at random, many clients; prints JSON, exits 1 on a failure.

    ladder bench chaos --requests 2000 --clients 32 --deadline 4
    ladder bench chaos --triton --triton-kills 2     # and kill -9 / restart Triton mid-run

The pool is the shipped default with every model's upstream pointed at one misbehaving fake
(``ladder.bench.faulty_upstream``): 5xx, 429 with Retry-After, hangs, resets before an answer and mid-stream,
unsolicited 100-continue, close-delimited bodies and CRLFs split across reads, drawn per call. Settings
are the defaults except the deadline. See ``ladder.bench.chaos`` for what must hold.

With ``--triton`` the gateway scores on a real ``tritonserver`` (``scripts/install_triton.sh``) serving a
cpu export of the shipped router, which is SIGKILLed and restarted on the same ports ``--triton-kills``
times, spaced by requests/(kills+1) completed with Triton in use; the run sends at least ``--requests`` and
goes on until as many have followed the last restart (``ladder.bench.triton_outages``). The JSON gains a
``triton`` section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from ladder.bench.chaos import WEIGHTS, drive, verdict
from ladder.bench.faulty_upstream import RawUpstream, random_chooser
from ladder.bench.triton_outages import TritonOutages, router_repository
from ladder.core.loopback import free_port as _free_port
from ladder.core.pool import PoolConfig, load_pool
from ladder.core.router import Router, default_pool_path
from ladder.export.triton_server import TritonNotInstalled, TritonServer

HOST = "127.0.0.1"




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


@contextmanager
def _triton(pool: PoolConfig, scratch: Path) -> Iterator[TritonServer]:
    """tritonserver on a cpu export of the pool's router (the encoder variant it routes with)."""
    try:
        server = TritonServer(scratch / "model_repository", log_path=scratch / "triton.log")
    except TritonNotInstalled as exc:
        raise SystemExit(f"--triton: {exc}") from exc
    router_repository(Router.from_pool(pool), server.repository)
    with server:
        yield server


def _scorer(url: str) -> dict[str, Any]:
    """The gateway's scorer state from ``/readyz`` ({} when it does not answer)."""
    try:
        return dict(httpx.get(f"{url}/readyz", timeout=2, trust_env=False).json().get("scorer", {}))
    except (httpx.HTTPError, ValueError):
        return {}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ladder bench chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--deadline", type=float, default=4.0, help="The gateway's deadline_s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--triton", action="store_true", help="Score on a real tritonserver, killed mid-run")
    parser.add_argument("--triton-kills", type=int, default=2, help="SIGKILLs (each followed by a restart)")
    parser.add_argument("--triton-down", type=float, default=2.0, help="Seconds from a kill to its restart")
    parser.add_argument(
        "--triton-unavailable",
        choices=("embedded", "error"),
        default="embedded",
        help="The gateway's triton.on_unavailable: the embedded scorer answers (the default) or a 503",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    pool = load_pool(default_pool_path())
    outages: TritonOutages | None = None
    with RawUpstream() as upstream, tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        upstream.chooser = random_chooser(args.seed, WEIGHTS)
        data = pool.model_dump(mode="json")
        for model in data["models"]:
            model["upstream"] = {"base_url": f"{upstream.url}/{model['name']}/v1", "model": model["name"]}
        pool_path, audit_path = Path(scratch) / "pool.yaml", Path(scratch) / "audit.jsonl"
        pool_path.write_text(yaml.safe_dump(data), encoding="utf-8")
        port = _free_port()
        url = f"http://{HOST}:{port}"
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
        if args.triton:
            server = stack.enter_context(_triton(pool, Path(scratch)))
            env["LADDER_SCORER"] = "triton"
            env["LADDER_TRITON__URL"] = server.grpc_url
            env["LADDER_TRITON__ON_UNAVAILABLE"] = args.triton_unavailable
            every = args.requests // (args.triton_kills + 1)  # requests before each kill and after the last
            outages = TritonOutages(
                server,
                args.triton_kills,
                every,
                lambda: bool(_scorer(url).get("triton_up")),
                args.triton_down,
            )
        gateway = subprocess.Popen([sys.executable, "-m", "ladder.gateway"], env=env)
        try:
            _wait_ready(f"{url}/readyz", gateway)
            if outages is not None:
                outages.start()
            on_outcome = outages.completed if outages is not None else None
            keep_going = outages.going if outages is not None else None
            outcomes, seconds = asyncio.run(
                drive(url, args.requests, args.clients, on_outcome=on_outcome, keep_going=keep_going)
            )
            if outages is not None:
                outages.stop()  # an outage under way ends with Triton restarted and in use
            scorer = _scorer(url)
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
        lines = len(audit_path.read_text(encoding="utf-8").splitlines()) if audit_path.exists() else 0
        report = verdict(outcomes, seconds, list(upstream.log), lines, args.deadline)
    report["clients"] = args.clients
    if outages is not None:
        report["triton"] = outages.report(outcomes, args.deadline, scorer)
        report["ok"] = report["ok"] and report["triton"]["ok"]
    print(json.dumps(report))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
