"""A seccomp filter for the jail: no ``socket()`` (so no connection anywhere) and no io_uring."""

from __future__ import annotations

import errno
import platform
import struct

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_KILL_PROCESS = 0x80000000
_X32_BIT = 0x40000000

# machine → (AUDIT_ARCH_*, the system call numbers refused: socket, io_uring_setup)
_ARCHES = {
    "x86_64": (0xC000003E, (41, 425)),
    "aarch64": (0xC00000B7, (198, 425)),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def no_sockets_filter(machine: str | None = None) -> bytes | None:
    """The filter program for this machine, or None where its system call numbers are not known here.

    Classic BPF over ``struct seccomp_data``, for bubblewrap's ``--seccomp FD``: ``socket`` and
    ``io_uring_setup`` fail with ``EPERM``; a process using another ABI (x32, i386), whose numbers are not
    checked, is killed. ``socketpair`` stays: asyncio's event loop needs one, and a pair reaches nothing outside.
    """
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, refused = arch
    denials = len(refused)
    # 0: load arch; 1: other ABI → kill; 2: load nr; 3: x32 → errno; 4..: refused → errno; allow; errno; kill
    errno_at = 4 + denials + 1
    kill_at = errno_at + 1
    program = [
        _op(_LD_W_ABS, 4),
        _op(_JEQ_K, audit_arch, 0, kill_at - 2),
        _op(_LD_W_ABS, 0),
        _op(_JGE_K, _X32_BIT, errno_at - 4, 0),
    ]
    for index, number in enumerate(refused):
        here = 4 + index
        program.append(_op(_JEQ_K, number, errno_at - here - 1, 0))
    program += [_op(_RET_K, _ALLOW), _op(_RET_K, _ERRNO | errno.EPERM), _op(_RET_K, _KILL_PROCESS)]
    return b"".join(program)
