"""Running untrusted answer code against tests in the jail: a pass only with proof, outcomes in fixed words."""

from __future__ import annotations

import builtins
import contextlib
import enum
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.training.judge import harness
from ladder.training.judge.jail import NOBODY, Jail, build_jail

_BUILTIN_EXCEPTIONS = frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
)
_KILL_GRACE_S = 10.0


@dataclass(frozen=True)
class Limits:
    """What a test run may use: wall time, address space and file size per process, processes in all."""

    time_s: float = 10.0
    memory_mb: int = 512
    file_mb: int = 16
    processes: int = 16


class Outcome(enum.Enum):
    """Why a run passed or failed: the only words about a run that are ever kept."""

    PASSED = "tests passed"
    FAILED = "failed"
    MEMORY = "out of memory"
    TIMEOUT = "timed out"
    CRASHED = "crashed"
    FILE_LIMIT = "file size limit"
    NO_PROOF = "no proof the tests ran to the end"
    NO_JAIL = "no jail"


@dataclass(frozen=True)
class RunResult:
    """A run's verdict; ``detail`` is built from the outcome and fixed names only."""

    outcome: Outcome
    exception: str | None = None
    signal_name: str | None = None
    time_s: float | None = None

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED

    @property
    def detail(self) -> str:
        if self.outcome is Outcome.FAILED:
            return f"failed: {self.exception or 'an exception'}"
        if self.outcome is Outcome.MEMORY:
            return "out of memory (MemoryError)"
        if self.outcome is Outcome.TIMEOUT:
            return f"timed out after {self.time_s:g}s"
        if self.outcome is Outcome.CRASHED and self.signal_name:
            return f"crashed ({self.signal_name})"
        return str(self.outcome.value)


def _verdict(report: bytes, token: str) -> RunResult | None:
    """The harness's report, if it carries this run's token; only known exception names survive."""
    first = report.split(b"\n", 1)[0]
    key = token.encode("ascii") + b" "
    if not secrets.compare_digest(first[: len(key)], key):
        return None
    verdict = first[len(key) :].decode("ascii", "replace")
    if verdict == "passed":
        return RunResult(Outcome.PASSED)
    name = verdict.removeprefix("raised ")
    if name == "MemoryError":
        return RunResult(Outcome.MEMORY)
    return RunResult(Outcome.FAILED, exception=name if name in _BUILTIN_EXCEPTIONS else None)


def _signal_name(returncode: int) -> str | None:
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    try:
        return signal.Signals(number).name if number else None
    except ValueError:
        return None


def _ended_without_proof(returncode: int, limits: Limits) -> RunResult:
    name = _signal_name(returncode)
    if name == "SIGXCPU":
        return RunResult(Outcome.TIMEOUT, time_s=limits.time_s)
    if name == "SIGXFSZ":
        return RunResult(Outcome.FILE_LIMIT)
    if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGABRT", "SIGSYS", "SIGFPE"):
        return RunResult(Outcome.CRASHED, signal_name=name)
    return RunResult(Outcome.NO_PROOF)


@dataclass
class _Box:
    """The files of one run: what the jail reads, its scratch directory, and what comes back."""

    root: Path
    inbox: Path
    scratch: Path
    report: Path
    info: Path


@contextmanager
def _box(code: str, tests: str, owner: int | None) -> Iterator[_Box]:
    with tempfile.TemporaryDirectory(prefix="ladder-judge-") as tmp:
        root = Path(tmp)
        box = _Box(root, root / "box", root / "scratch", root / "report", root / "info")
        box.inbox.mkdir()
        box.scratch.mkdir(mode=0o700)
        for inner in ("tmp", "shm"):
            (box.scratch / inner).mkdir(mode=0o700)
        (box.inbox / "answer.py").write_text(code, encoding="utf-8")
        (box.inbox / "tests.py").write_text(tests, encoding="utf-8")
        shutil.copyfile(harness.__file__, box.inbox / "harness.py")
        if owner is not None:  # bwrap starts as nobody: it must reach the box, and only it may write the scratch
            os.chmod(root, 0o711)
            for path in (box.inbox, *box.inbox.iterdir()):
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            for path in (box.scratch, box.scratch / "tmp", box.scratch / "shm"):
                os.chown(path, owner, owner)
        try:
            yield box
        finally:
            _wipe(box.scratch)


def _wipe(scratch: Path) -> None:
    """Remove what the jail left, whatever modes it set on its files."""
    for path in scratch.rglob("*"):
        try:
            if path.is_dir() and not path.is_symlink():
                os.chmod(path, 0o700)
        except OSError:
            pass
    shutil.rmtree(scratch, ignore_errors=True)


def _kill_namespace(process: subprocess.Popen[bytes], info: Path) -> None:
    """Kill the jail's PID 1 (the kernel then kills and reaps every process in it), then bwrap itself."""
    child = _child_pid(info)
    if child is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_KILL_GRACE_S)  # bwrap returns once its child, the PID namespace's init, is gone
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # before the jail was up, or no jail: the session
    process.wait()


def _child_pid(info: Path) -> int | None:
    try:
        value = json.loads(info.read_text(encoding="utf-8") or "{}").get("child-pid")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) else None


def run_jailed(
    jail: Jail, code: str, tests: str, limits: Limits = Limits(), *, errors_to: Path | None = None
) -> RunResult:
    """Run ``code`` then ``tests`` in ``jail``; passed only with this run's proof.

    The harness in the jail reports ``passed`` with the run's random token after the last test; exit status
    means nothing. Only an :class:`Outcome` (with a built-in exception's name where there is one) is kept,
    never the program's output. At the time limit the jail's PID namespace is torn down, which kills every
    process the answer started, before this returns.
    """
    token = secrets.token_hex(32)
    owner = NOBODY if jail.as_nobody else None
    with _box(code, tests, owner) as box:
        token_read, token_write = os.pipe()
        os.write(token_write, token.encode("ascii"))
        os.close(token_write)
        seccomp_read = None
        if jail.seccomp is not None:
            seccomp_read, seccomp_write = os.pipe()
            os.write(seccomp_write, jail.seccomp)
            os.close(seccomp_write)
        report = os.open(box.report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        info = os.open(box.info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fds = (token_read, report, info, *(() if seccomp_read is None else (seccomp_read,)))
        argv = [
            *jail.command(box.inbox, box.scratch, seccomp_fd=seccomp_read, info_fd=info),
            "/box/harness.py",
            *_harness_args("/box", token_read, report, limits),
        ]
        popen: dict[str, Any] = {"env": {"PATH": "/usr/bin:/bin"}}  # bwrap is PID 1 inside: nothing to read there
        if jail.as_nobody:
            popen.update(user=NOBODY, group=NOBODY, extra_groups=[])
        try:
            return _supervise(argv, box, limits, token, fds, popen, errors_to)
        finally:
            for fd in fds:
                os.close(fd)


def run_unconfined(code: str, tests: str, limits: Limits = Limits()) -> RunResult:
    """Run ``code`` then ``tests`` in a plain subprocess with the same limits and proof, but no jail."""
    token = secrets.token_hex(32)
    with _box(code, tests, None) as box:
        token_read, token_write = os.pipe()
        os.write(token_write, token.encode("ascii"))
        os.close(token_write)
        report = os.open(box.report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fds = (token_read, report)
        harness_args = _harness_args(str(box.inbox), token_read, report, limits)
        argv = [sys.executable, "-I", "-S", str(box.inbox / "harness.py"), *harness_args]
        scratch = box.scratch / "tmp"
        popen = {"cwd": scratch, "env": {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch)}}
        try:
            return _supervise(argv, box, limits, token, fds, popen)
        finally:
            for fd in fds:
                os.close(fd)


def _harness_args(inbox: str, token_fd: int, report_fd: int, limits: Limits) -> list[str]:
    cpu = max(1, int(limits.time_s + 1))
    numbers = (token_fd, report_fd, limits.memory_mb, limits.file_mb, cpu, limits.processes)
    return [inbox, *(str(v) for v in numbers)]


def _supervise(
    argv: list[str],
    box: _Box,
    limits: Limits,
    token: str,
    fds: tuple[int, ...],
    popen: dict[str, Any],
    errors_to: Path | None = None,
) -> RunResult:
    """Start the run, wait up to the time limit, kill it all past that; read the report.

    Standard error goes nowhere, except (``errors_to``) when the jail is probed with Ladder's own test.
    """
    with (errors_to or Path(os.devnull)).open("wb") as errors:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            pass_fds=fds,
            start_new_session=True,
            **popen,
        )
        try:
            returncode = process.wait(timeout=limits.time_s)
        except subprocess.TimeoutExpired:
            _kill_namespace(process, box.info)
            return RunResult(Outcome.TIMEOUT, time_s=limits.time_s)
    with box.report.open("rb") as handle:
        verdict = _verdict(handle.read(512), token)
    return verdict if verdict is not None else _ended_without_proof(returncode, limits)


def probe(jail: Jail) -> str | None:
    """Run a trivial test in ``jail``; None when it passes, else what went wrong (bwrap's own first line)."""
    with tempfile.TemporaryDirectory(prefix="ladder-probe-") as tmp:
        errors = Path(tmp) / "errors"
        result = run_jailed(jail, "", "assert True", Limits(time_s=30), errors_to=errors)
        if result.passed:
            return None
        said = errors.read_text(encoding="utf-8", errors="replace").strip().splitlines()[:1]
    hint = said[0][:300] if said else result.detail
    return f"{hint} (user namespaces may be refused by this kernel or container)"


@dataclass(frozen=True)
class JailStatus:
    """A jail that works here, or why there is none (``jail`` is None)."""

    jail: Jail | None
    why: str


def find_jail(*, network_namespace: bool = True) -> JailStatus:
    """Build the jail for this machine and try it once; ``network_namespace=False`` shares the network namespace."""
    built = build_jail(network_namespace=network_namespace)
    if isinstance(built, str):
        return JailStatus(None, built)
    failure = probe(built)
    if failure is not None:
        return JailStatus(None, f"bubblewrap cannot build the jail here: {failure}")
    return JailStatus(built, f"bubblewrap jail, network cut by {built.network}")


@functools.cache
def default_jail() -> JailStatus:
    """The jail for this process, found once."""
    return find_jail()


def run_tests(
    code: str, tests: str, limits: Limits = Limits(), *, jail: Jail | None = None, unsafe_code: bool = False
) -> RunResult:
    """Run ``code`` then ``tests`` in ``jail`` (default: this machine's); with no jail, only if ``unsafe_code``."""
    jail = jail or default_jail().jail
    if jail is not None:
        return run_jailed(jail, code, tests, limits)
    if unsafe_code:
        return run_unconfined(code, tests, limits)
    return RunResult(Outcome.NO_JAIL)
