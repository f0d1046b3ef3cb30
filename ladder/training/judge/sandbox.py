"""Running untrusted answer code against tests: a subprocess with time, memory and file limits and no network.

Network is cut twice: the child runs in a fresh network namespace (``unshare --net``) where the kernel allows
it, and always under an audit hook (PEP 578) installed before the answer's code runs, which refuses socket
creation and connection, spawning processes and loading native libraries through ctypes.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

GUARD = r"""
import sys
_BLOCKED = ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
            "socket.sendmsg", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork",
            "os.forkpty", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata")
def _guard(event, args):
    if event in _BLOCKED or event.startswith("os.spawn"):
        raise PermissionError(f"sandbox: {event} is not allowed")
sys.addaudithook(_guard)
del _guard
_source = open(sys.argv[1], encoding="utf-8").read()
exec(compile(_source, "answer.py", "exec"), {"__name__": "__main__"})
"""


@dataclass(frozen=True)
class Limits:
    """What a test run may use."""

    time_s: float = 10.0
    memory_mb: int = 512
    file_mb: int = 16


@dataclass(frozen=True)
class RunResult:
    passed: bool
    detail: str


@functools.cache
def _can_unshare() -> bool:
    tool = shutil.which("unshare")
    if tool is None:
        return False
    try:
        probe = subprocess.run([tool, "-rn", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def network_isolation() -> str:
    """How the sandbox cuts the network on this machine (for reports)."""
    return "network namespace + audit hook" if _can_unshare() else "audit hook"


def _limit(limits: Limits) -> None:  # runs in the child, before exec
    cpu = max(1, int(limits.time_s + 1))
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setsid()


def run_tests(code: str, tests: str, limits: Limits = Limits()) -> RunResult:
    """Run ``code`` then ``tests`` in a sandboxed Python; passed when it exits 0 within the limits."""
    with tempfile.TemporaryDirectory(prefix="ladder-judge-") as tmp:
        source = Path(tmp) / "answer.py"
        source.write_text(f"{code}\n\n{tests}\n", encoding="utf-8")
        guard = Path(tmp) / "guard.py"
        guard.write_text(GUARD, encoding="utf-8")
        command = [sys.executable, "-I", "-S", str(guard), str(source)]
        if _can_unshare():
            command = ["unshare", "-rn", *command]
        try:
            done = subprocess.run(
                command,
                cwd=tmp,
                capture_output=True,
                timeout=limits.time_s,
                preexec_fn=lambda: _limit(limits),
                env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return RunResult(False, f"timed out after {limits.time_s:g}s")
    if done.returncode == 0:
        return RunResult(True, "tests passed")
    tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
    return RunResult(False, f"tests failed: {tail[0][:200]}")
