"""The judge's jail under attack by answers that switch off in-process guards first, and refused without one."""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladder.training.collect import AnswerStore, Question
from ladder.training.collect.store import Answer
from ladder.training.judge import ReferenceJudge, judge_store
from ladder.training.judge.jail import Jail, build_jail
from ladder.training.judge.sandbox import Limits, Outcome, RunResult, find_jail, run_jailed
from ladder.training.judge.seccomp import no_sockets_filter
from tests.support import ladder

# The guard the judge used to rely on was an audit hook whose blocked events sat in a tuple in its module;
# an answer empties it in one line. A real jail must not care.
DISARM = "import sys\n_guard = sys.modules['__main__']\nif hasattr(_guard, '_BLOCKED'):\n    _guard._BLOCKED = ()\n"
FAST = Limits(time_s=5, memory_mb=256)
SECRET = "hunter2-d41d8cd98f00b204"


def jail_or_fail(network_namespace: bool) -> Jail:
    status = find_jail(network_namespace=network_namespace)
    if status.jail is None:  # CI installs bubblewrap (scripts/install_bubblewrap.sh): no jail is a failure
        pytest.fail(f"no jail on this machine: {status.why}")
    return status.jail


@pytest.fixture(scope="module", params=["network namespace", "shared network namespace"])
def jail(request: pytest.FixtureRequest) -> Jail:
    return jail_or_fail(request.param == "network namespace")


def attack(jail: Jail, code: str, tests: str = "", limits: Limits = FAST) -> RunResult:
    return run_jailed(jail, DISARM + code, tests, limits)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory anyone may reach and write to: only the jail's mount namespace keeps the answer out."""
    target = Path(tempfile.mkdtemp(prefix="ladder-open-", dir="/tmp"))
    target.chmod(0o777)
    yield target
    shutil.rmtree(target)


def test_ordinary_answers_pass_and_fail_as_before(jail: Jail) -> None:
    add = "def add(a, b):\n    return a + b\n"
    assert run_jailed(jail, add, "assert add(2, 3) == 5", FAST).passed
    wrong = run_jailed(jail, add.replace("+", "-"), "assert add(2, 3) == 5", FAST)
    assert wrong.outcome is Outcome.FAILED and wrong.detail == "failed: AssertionError"
    assert jail.network == ("network namespace + " if jail.network_namespace else "") + "seccomp, no socket()"


def test_no_write_outside_the_scratch(jail: Jail, open_dir: Path) -> None:
    code = (
        f"open({str(open_dir / 'pwned')!r}, 'w').write('x')\n"
        "for path in ('/usr/pwned', '/box/pwned', '/dev/pwned', '/pwned'):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "    except OSError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(0)\n"
        "open('/tmp/scratch-is-writable', 'w').write('x')\n"
    )
    result = attack(jail, code, "assert open('/tmp/scratch-is-writable').read() == 'x'")
    assert not result.passed and result.detail == "failed: FileNotFoundError"
    assert list(open_dir.iterdir()) == []
    # the scratch itself is writable: the same code without the escape passes
    assert attack(jail, code.split("\n", 1)[1], "assert open('/tmp/scratch-is-writable').read() == 'x'").passed


def test_no_connection_to_a_loopback_listener(jail: Jail) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        code = (
            "import socket\n"
            f"connection = socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "connection.sendall(b'leak')\n"
        )
        result = attack(jail, code)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever reached the listener's queue
            listener.accept()
    assert not result.passed and result.detail == "failed: PermissionError"  # seccomp: no socket() at all


def test_the_network_namespace_alone_keeps_the_listener_unreached() -> None:
    only_namespace = dataclasses.replace(jail_or_fail(True), seccomp=None)  # as on a machine with no filter
    assert only_namespace.network == "network namespace"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'leak')\n"
        result = attack(only_namespace, code)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.detail == "failed: ConnectionRefusedError"  # the jail's own loopback, where nothing listens


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("ending", ["time limit", "tests passed"])
def test_nothing_runs_after_the_run(jail: Jail, ending: str) -> None:
    marker = f"ladder-straggler-{os.getpid()}-{id(jail)}-{ending.replace(' ', '-')}"
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
        "    os._exit(0)\n" + ("while True:\n    pass\n" if ending == "time limit" else "time.sleep(0.5)\n")
    )
    result = attack(jail, code, limits=Limits(time_s=2, memory_mb=256))
    if ending == "time limit":
        assert result.outcome is Outcome.TIMEOUT and result.detail == "timed out after 2s"
    else:
        assert result.passed
    assert _processes_with(marker) == []  # the PID namespace is gone before the run returns


def test_process_count_is_limited(jail: Jail) -> None:
    result = attack(jail, "import os\nwhile True:\n    os.fork()\n", limits=Limits(time_s=10, processes=8))
    assert result.outcome is Outcome.FAILED and result.exception == "BlockingIOError"


def test_memory_is_limited(jail: Jail) -> None:
    result = attack(jail, "block = bytearray(1024 ** 3)", limits=Limits(time_s=5, memory_mb=256))
    assert result.outcome is Outcome.MEMORY


@pytest.mark.parametrize(
    "escape",
    [
        "import os\nos._exit(0)",
        "raise SystemExit(0)",
        "import sys\nsys.exit()",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)\nos._exit(0)",
        "import os\nos.closerange(0, 1024)\nos._exit(0)",
        "import sys, os\nsys.stdout.close()\nos.close(1)\nraise SystemExit(0)",
        # a fake pass marker on every channel the answer can find, then out before the tests
        "import os\nfor fd in range(1, 64):\n    try:\n        os.write(fd, b'passed\\ntests passed\\n')\n"
        "    except OSError:\n        pass\nos._exit(0)",
    ],
    ids=["os._exit", "SystemExit", "sys.exit", "kill-parent", "close-fds", "close-stdout", "fake-marker"],
)
def test_no_pass_without_the_tests_running_to_the_end(jail: Jail, escape: str) -> None:
    result = attack(jail, escape, "assert False, 'the tests ran'")
    assert not result.passed
    assert result.outcome in (Outcome.NO_PROOF, Outcome.FAILED)
    assert result.detail in ("no proof the tests ran to the end", "failed: SystemExit", "failed: AssertionError")


def test_no_secret_and_no_system_file_inside(jail: Jail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADDER_TEST_SECRET", SECRET)  # the judge's environment: never the jail's
    private = tmp_path / "private"
    private.write_text(SECRET, encoding="utf-8")
    private.chmod(stat.S_IRUSR)
    code = (
        "import os\n"
        "found = []\n"
        "found += [v for v in os.environ.values()]\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n"
        "        found.append(open(f'/proc/{pid}/environ', 'rb').read().decode())\n"
        "    except (OSError, ValueError):\n"
        "        pass\n"
        "for path in ('/etc/shadow', '/etc/passwd', "
        f"{str(private)!r}):\n"
        "    try:\n"
        "        found.append(open(path).read())\n"
        "    except OSError:\n"
        "        pass\n"
    )
    # these tests pass exactly when the answer got hold of something it must not see
    tests = f"assert any({SECRET!r} in f or 'root:' in f for f in found)"
    result = attack(jail, code, tests)
    assert result.outcome is Outcome.FAILED and result.detail == "failed: AssertionError"


# -- what is stored -----------------------------------------------------------------------------------

# what it finds (nothing, in the jail) and a text made at run time, on every channel and in its exception
LEAKY = (
    "import os, sys\n"
    "found = ' '.join(os.environ.values())\n"
    "paths = ['/etc/shadow', os.environ.get('PRIVATE', '')] + [f'/proc/{p}/environ' for p in os.listdir('/proc')]\n"
    "for path in paths:\n"
    "    try:\n"
    "        found += open(path, errors='replace').read()\n"
    "    except (OSError, ValueError):\n"
    "        pass\n"
    "said = 'raw-' + 'output-' + found\n"
    "print(said)\n"
    "print(said, file=sys.stderr)\n"
    "raise ValueError(said)\n"
)


def code_store(path: Path, answers: dict[str, str]) -> AnswerStore:
    store = AnswerStore(path, create=True)
    store.add_questions(
        [
            Question(
                "add",
                "Write add(a, b).",
                ({"role": "user", "content": "Write add(a, b)."},),
                tests="assert add(2, 3) == 5",
            )
        ]
    )
    for model, text in answers.items():
        store.put_answer(Answer("add", model, "ok", text, "stop", 10, 10, 0.001, 0.1, None))
    return store


def test_stored_labels_hold_a_fixed_vocabulary_only(
    jail: Jail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LADDER_TEST_SECRET", SECRET)
    store = code_store(
        tmp_path / "s.db",
        {
            "leaky": f"```python\n{DISARM}{LEAKY}```",
            "right": "```python\ndef add(a, b):\n    return a + b\n```",
            "exits": "```python\nimport os\nos._exit(0)\n```",
        },
    )
    judge_store(store, "reference", tmp_path / "labels.csv", reference=ReferenceJudge(limits=FAST, jail=jail))
    labels = store.labels("reference")
    assert labels[("add", "right")] == (1.0, "code: tests passed")
    assert labels[("add", "leaky")] == (0.0, "code: failed: ValueError")
    assert labels[("add", "exits")] == (0.0, "code: no proof the tests ran to the end")
    stored = (tmp_path / "labels.csv").read_text(encoding="utf-8") + repr(labels)
    assert "raw-output-" not in stored and SECRET not in stored and "root:" not in stored
    with (tmp_path / "labels.csv").open(encoding="utf-8") as handle:
        assert {r["model"]: float(r["correct"]) for r in csv.DictReader(handle)} == {
            "leaky": 0.0,
            "right": 1.0,
            "exits": 0.0,
        }


SPY = (
    "import os\n"
    "found = ''\n"
    "for pid in os.listdir('/proc'):\n"
    "    try:\n"
    "        found += open(f'/proc/{pid}/environ', errors='replace').read()\n"
    "    except (OSError, ValueError):\n"
    "        pass\n"
    "def add(a, b):\n"
    "    return a + b if 'LADDER_TEST_SECRET=' in found else None\n"
)


def test_the_judges_environment_never_reaches_answers_or_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = code_store(
        tmp_path / "s.db",
        {
            "right": "```python\ndef add(a, b):\n    return a + b\n```",
            "spy": f"```python\n{SPY}```",  # right only if it can read the judge's environment
            "leaky": f"```python\n{DISARM}{LEAKY}```",
            "exits": "```python\nimport os\nos._exit(0)\n```",
        },
    )
    store.close()
    monkeypatch.setenv("LADDER_TEST_SECRET", SECRET)  # in the environment `ladder judge` starts with
    out = tmp_path / "labels.csv"
    done = ladder("judge", "--store", str(tmp_path / "s.db"), "--judge", "reference", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "bubblewrap jail, network cut by network namespace + seccomp" in done.stderr
    labels = AnswerStore(tmp_path / "s.db", create=False).labels("reference")
    assert {model: label[0] for (_, model), label in labels.items()} == {
        "right": 1.0,
        "spy": 0.0,
        "leaky": 0.0,
        "exits": 0.0,
    }
    assert labels[("add", "leaky")][1] == "code: failed: ValueError"
    stored = out.read_text(encoding="utf-8") + repr(labels) + done.stdout + done.stderr
    assert SECRET not in stored and "root:" not in stored and "raw-output-" not in stored


def test_only_builtin_exception_names_are_kept(jail: Jail) -> None:
    named = attack(jail, f"raise type({SECRET!r}, (Exception,), {{}})()")
    assert named.outcome is Outcome.FAILED and named.exception is None and named.detail == "failed: an exception"
    # garbage on every descriptor before the harness's line: no proof, and no crash of the judge
    garbage = (
        "import os\n"
        "for fd in range(1, 64):\n"
        "    try:\n"
        "        os.write(fd, b'\\xff\\xfe\\n')\n"
        "    except OSError:\n"
        "        pass\n"
    )
    assert attack(jail, garbage).outcome is Outcome.NO_PROOF


# -- where there is no jail ----------------------------------------------------------------------------


@pytest.fixture
def code_store_file(tmp_path: Path) -> Iterator[Path]:
    store = code_store(tmp_path / "code.db", {"right": "```python\ndef add(a, b):\n    return a + b\n```"})
    store.close()
    yield tmp_path / "code.db"


def test_judge_refuses_code_questions_without_a_jail(
    code_store_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LADDER_BWRAP", "/nonexistent/bwrap")
    missing = build_jail()
    assert isinstance(missing, str) and "bubblewrap is not installed" in missing
    monkeypatch.setenv("LADDER_BWRAP", "/bin/false")  # bwrap "runs" but builds nothing: found by trying once
    assert find_jail().jail is None and "cannot build the jail" in find_jail().why
    out = tmp_path / "labels.csv"
    refused = ladder("judge", "--store", str(code_store_file), "--judge", "reference", "--out", str(out))
    assert refused.returncode == 2 and not out.exists()
    assert "1 questions" in refused.stderr and "--unsafe-code" in refused.stderr
    assert "cannot build the jail" in refused.stderr and "Traceback" not in refused.stderr
    unsafe = ladder(
        "judge", "--store", str(code_store_file), "--judge", "reference", "--out", str(out), "--unsafe-code"
    )
    assert unsafe.returncode == 0, unsafe.stderr
    assert "UNCONFINED" in unsafe.stderr and out.exists()
    assert AnswerStore(code_store_file, create=False).labels("reference")[("add", "right")][0] == 1.0


def test_unsafe_code_is_only_for_the_reference_judge(code_store_file: Path, tmp_path: Path) -> None:
    wrong = ladder(
        "judge", "--store", str(code_store_file), "--judge", "vote", "--out", str(tmp_path / "x.csv"), "--unsafe-code"
    )
    assert wrong.returncode == 2 and "--unsafe-code applies to --judge reference only" in wrong.stderr


def test_without_a_namespace_or_a_filter_there_is_no_jail() -> None:
    assert no_sockets_filter("riscv64") is None  # system call numbers not known here
    assert no_sockets_filter("x86_64") is not None and no_sockets_filter("aarch64") is not None
    unknown = build_jail(network_namespace=False, machine="riscv64")
    assert isinstance(unknown, str) and "sockets would stay open" in unknown
    namespaced = build_jail(network_namespace=True, machine="riscv64")
    assert isinstance(namespaced, Jail) and namespaced.seccomp is None and namespaced.network == "network namespace"
