"""``ladder serve`` in a subprocess on a free loopback port, configured by its environment as a replica is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ladder.core.loopback import free_port, stop_process, wait_until_ready

START_TIMEOUT_S = 90.0


class ServeProcess:
    """One gateway process; ``wait_ready`` fails the test with the log's tail when it does not come up."""

    def __init__(self, pool: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ladder = Path(sys.executable).with_name("ladder")
        command = [str(ladder), "serve", "--pool", str(pool), "--port", str(self.port)]
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        try:
            wait_until_ready(f"{self.url}/readyz", self.process, self.log, START_TIMEOUT_S, "ladder serve")
        except RuntimeError as exc:
            self.stop()
            pytest.fail(str(exc))

    def stop(self) -> None:
        stop_process(self.process, 20)


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ``LADDER_*``/``OTEL_*`` setting (``LADDER_HOME`` kept: the
    encoder built there), plus ``settings``."""
    keep = {"LADDER_HOME"}
    env = {k: v for k, v in os.environ.items() if k in keep or not k.startswith(("LADDER_", "OTEL_"))}
    env.update(settings)
    return env
