"""Loopback helpers for benchmarks and tests: a free port, waiting for a server to answer, stopping it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log: Path | None, timeout_s: float, name: str
) -> None:
    """Poll ``url`` until it answers 200; raise (with the log's tail, where there is a log file) if ``process``
    exits or time runs out."""

    def tail() -> str:
        return "" if log is None else "\n" + log.read_text(errors="replace")[-3000:]

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited ({process.returncode}):{tail()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not ready in {timeout_s:.0f} s:{tail()}")
        time.sleep(0.2)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0, group: bool = False) -> None:
    """SIGTERM ``process`` (its whole process group where ``group``); SIGKILL it if it lives on past ``timeout_s``."""

    def send(sig: signal.Signals) -> None:
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


class Started(ABC):
    """A server that ``start()`` brings up and ``stop()`` takes down; ``with`` does both."""

    @abstractmethod
    def start(self) -> Self:
        """Bring the server up and return it once it answers."""

    @abstractmethod
    def stop(self) -> None:
        """Take the server down."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
