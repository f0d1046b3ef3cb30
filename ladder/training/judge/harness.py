"""The program the jail runs: limits, the answer, its tests, then the proof that the tests ran to the end."""

import builtins
import contextlib
import os
import resource
import sys


def _limit(memory_mb: int, file_mb: int, cpu_s: int, nproc: int) -> None:
    """Hard limits for this process and every one it starts: nothing in the jail can raise them again."""
    for which, value in (
        (resource.RLIMIT_AS, memory_mb * 1024 * 1024),
        (resource.RLIMIT_FSIZE, file_mb * 1024 * 1024),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_NPROC, nproc),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 256),
    ):
        resource.setrlimit(which, (value, value))


def main(argv: list[str]) -> None:
    """Run as ``python -I -S harness.py BOX TOKEN_FD REPORT_FD MEMORY_MB FILE_MB CPU_S NPROC`` in the jail.

    BOX holds ``answer.py`` and ``tests.py``. The token (random, from the judge) is read from a pipe that is
    closed before the answer runs: it is in no file, argument or environment variable the answer can read.
    The report is one line, ``TOKEN passed`` or ``TOKEN raised NAME``, written after the last test; an answer
    that exits, is killed or closes the report first leaves no proof, and cannot write one without the token.
    """
    box = argv[0]
    token_fd, report_fd, memory_mb, file_mb, cpu_s, nproc = (int(a) for a in argv[1:])
    token = os.read(token_fd, 128).decode("ascii").strip()
    os.close(token_fd)
    with open(os.path.join(box, "answer.py"), encoding="utf-8") as handle:
        answer = handle.read()
    with open(os.path.join(box, "tests.py"), encoding="utf-8") as handle:
        tests = handle.read()
    _limit(memory_mb, file_mb, cpu_s, nproc)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    run, kind, write, leave = exec, type, os.write, os._exit  # held: an answer rebinding builtins changes nothing
    try:
        answer_code = compile(answer, "answer.py", "exec")
        tests_code = compile(tests, "tests.py", "exec")  # compiled before the answer runs
        run(answer_code, namespace)
        run(tests_code, namespace)
        verdict = "passed"
    except BaseException as exc:  # SystemExit too: leaving before the tests end is no pass
        verdict = f"raised {kind(exc).__name__}"
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    write(report_fd, f"{token} {verdict}\n".encode("ascii", "replace"))
    leave(0)


if __name__ == "__main__":
    main(sys.argv[1:])
