"""The jail answer code runs in: a bubblewrap command line, and what this machine needs to build one."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from ladder.training.judge.seccomp import no_sockets_filter

NOBODY = 65534
_SYSTEM = ("/usr",)
_TOP_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class Jail:
    """How to jail a command on this machine: bwrap, the interpreter to run, what cuts the network.

    Inside, a process sees a read-only system (``/usr`` and the interpreter), a private scratch directory as
    ``/tmp`` and ``/dev/shm`` (the only writable place), a fresh ``/proc`` and a read-only minimal ``/dev``.
    It runs as uid 65534 with no capabilities, in new user, PID, mount, IPC, UTS and (unless
    ``network_namespace`` is off) network namespaces, with an empty environment, in its own session, under a
    seccomp filter that refuses ``socket()``. When the judge is root, bwrap itself starts as uid 65534
    (``as_nobody``): the jail's processes are nobody outside too, so root's files stay closed and the
    process-count limit applies (the kernel does not count root's processes).
    """

    bwrap: str
    python: str
    binds: tuple[str, ...]
    network_namespace: bool
    seccomp: bytes | None
    as_nobody: bool

    @property
    def network(self) -> str:
        """What cuts the network, in words (for reports)."""
        cuts = (("network namespace", self.network_namespace), ("seccomp, no socket()", self.seccomp is not None))
        return " + ".join(name for name, on in cuts if on)

    def command(self, inbox: Path, scratch: Path, *, seccomp_fd: int | None, info_fd: int) -> list[str]:
        """The bwrap command line that runs ``python -I -S`` in the jail; the caller appends its arguments.

        ``inbox`` is seen read-only at ``/box``; ``scratch/tmp`` and ``scratch/shm`` are ``/tmp`` and ``/dev/shm``.
        Start it with a minimal environment: the jail's PID 1 is bwrap, and its environment is readable inside.
        """
        argv = [
            self.bwrap,
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            *(["--unshare-net"] if self.network_namespace else []),
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8",
            "--setenv", "HOME", "/tmp",
            "--uid", str(NOBODY),
            "--gid", str(NOBODY),
            "--hostname", "jail",
        ]  # fmt: skip
        for top in _TOP_LINKS:
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        for path in self.binds:
            argv += ["--ro-bind", path, path]
        argv += [
            "--proc", "/proc",
            "--dev", "/dev",
            "--ro-bind", str(inbox), "/box",
            "--bind", str(scratch / "tmp"), "/tmp",
            "--remount-ro", "/dev",
            "--bind", str(scratch / "shm"), "/dev/shm",
            "--chdir", "/tmp",
            "--remount-ro", "/",
            "--info-fd", str(info_fd),
        ]  # fmt: skip
        if seccomp_fd is not None:
            argv += ["--seccomp", str(seccomp_fd)]
        return [*argv, "--", self.python, "-I", "-S"]


def _world_reachable(path: str) -> bool:
    """Whether uid 65534 can reach and read ``path``: every directory above searchable, the file readable."""
    target = Path(path)
    for parent in reversed(target.parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            return False
    return bool(target.stat().st_mode & stat.S_IROTH)


def _interpreter(as_nobody: bool) -> tuple[str, tuple[str, ...]] | None:
    """The Python to run in the jail and the folders to bind for it: ours, else the system's python3."""
    ours = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    prefix = os.path.realpath(sys.base_prefix)
    candidates: list[tuple[str, tuple[str, ...]]] = [(ours, (prefix,))]
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system:
        candidates.append((os.path.realpath(system), ()))
    for python, binds in candidates:
        if not os.path.isfile(python):
            continue
        if as_nobody and not (_world_reachable(python) and all(_world_reachable(b) for b in binds)):
            continue
        extra = tuple(b for b in binds if not any(b == s or b.startswith(s + "/") for s in _SYSTEM))
        return python, tuple(_SYSTEM) + extra
    return None


def build_jail(*, network_namespace: bool = True, machine: str | None = None) -> Jail | str:
    """The jail this machine would use (not yet tried), or why there can be none; ``$LADDER_BWRAP`` names bwrap."""
    named = os.environ.get("LADDER_BWRAP", "").strip()
    bwrap = shutil.which(named or "bwrap")
    if bwrap is None:
        where = f"$LADDER_BWRAP={named!r} is not an executable" if named else "bwrap is not on the PATH"
        return f"bubblewrap is not installed ({where}); scripts/install_bubblewrap.sh installs it"
    as_nobody = os.geteuid() == 0
    found = _interpreter(as_nobody)
    if found is None:
        return "no Python interpreter that uid 65534 can read (install Debian's python3)"
    seccomp = no_sockets_filter(machine)
    if not network_namespace and seccomp is None:
        return "no network namespace and no seccomp filter for this machine: sockets would stay open"
    return Jail(bwrap, found[0], found[1], network_namespace, seccomp, as_nobody)
