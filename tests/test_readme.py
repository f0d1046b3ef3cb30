"""The README runs as written: its quick start and own-router loop, read from the file, on loopback upstreams."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from collect_support import world
from collect_support.harness import Loopback
from collect_support.pool_server import pool_yaml

from ladder.core.pool import load_pool
from ladder.training.collect import read_questions
from tests.support import REPO

pytest_plugins = ["collect_support.fixtures"]

README = REPO / "README.md"
# Lines the test does not run, because running the suite already did them: the set-up it runs inside.
DONE_BY_SETUP = {"make setup", "source .venv/bin/activate"}
SERVE_START_S = 120.0


def section(heading: str) -> str:
    """The README's text under ``## heading`` (up to the next level-2 heading)."""
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert found, f"README has no section {heading!r}"
    return found.group(1)


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def commands(block: str) -> list[list[str]]:
    """Each shell line as argv, comments dropped (the README's blocks have no continuations or pipes)."""
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [argv for argv in lines if argv]


@dataclass
class Shell:
    """Runs README lines in one folder, the way a user's shell would: exports persist, `ladder` is the CLI."""

    cwd: Path
    env: dict[str, str] = field(default_factory=lambda: {**os.environ, "COLUMNS": "80"})
    transcript: list[str] = field(default_factory=list)

    def run(self, argv: list[str]) -> None:
        line = shlex.join(argv)
        if line in DONE_BY_SETUP:
            return
        if argv[0] == "export":
            for assignment in argv[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = value
            return
        assert argv[0] == "ladder" and argv[1] != "serve", f"README line the test cannot run here: {line}"
        done = subprocess.run(
            [sys.executable, "-m", "ladder.cli", *argv[1:]],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.transcript.append(f"$ {line}\n{done.stderr}{done.stdout}")
        assert done.returncode == 0, f"`{line}` failed ({done.returncode}):\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr

    @contextmanager
    def serving(self, argv: list[str]) -> Iterator[str]:
        """Start `ladder serve ...` as written, on a free port (LADDER_PORT); yield its URL once it answers."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = self.cwd / f"serve-{port}.log"
        with log.open("w", encoding="utf-8") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "ladder.cli", *argv[1:]],
                cwd=self.cwd,
                env={**self.env, "LADDER_PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + SERVE_START_S
            while True:
                assert child.poll() is None, f"`{shlex.join(argv)}` exited:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"the gateway did not start:\n{log.read_text()}"
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            banner = log.read_text(encoding="utf-8")
            assert f"serving:    {url}/v1" in banner and f"playground: {url}/" in banner
            yield url
        finally:
            child.terminate()
            child.wait(timeout=30)


def chat(url: str, key: str, text: str) -> dict[str, object]:
    reply = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "ladder", "messages": [{"role": "user", "content": text}]},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, object] = reply.json()
    return body


def test_readme_examples_are_what_ladder_accepts(tmp_path: Path) -> None:
    """The pool file and the questions line the README shows load as they are."""
    (pool_block,) = fenced(section("Your own router"), "yaml")
    (tmp_path / "pool.yaml").write_text(pool_block, encoding="utf-8")
    pool = load_pool(tmp_path / "pool.yaml")
    assert [m.locality.value for m in pool.models] == ["cloud", "on-prem"]
    (loop,) = fenced(section("Your own router"), "bash")
    example = next(line.split("#", 1)[1].strip() for line in loop.splitlines() if '{"id"' in line)
    (tmp_path / "questions.jsonl").write_text(example + "\n", encoding="utf-8")
    (question,) = read_questions(tmp_path / "questions.jsonl")
    assert question.reference == "42" and question.task == "arithmetic"


@pytest.mark.slow
def test_quick_start_then_own_router_loop_as_written(tmp_path: Path, fake: Loopback) -> None:
    """The quick start, then the loop on a pool of two loopback models, ending in a gateway that answers."""
    shell = Shell(tmp_path)
    (quick,) = fenced(section("Quick start"), "bash")
    for argv in commands(quick):
        if argv[:2] == ["ladder", "serve"]:
            with shell.serving(argv) as url:
                models = httpx.get(
                    f"{url}/v1/models", headers={"Authorization": f"Bearer {shell.env['LADDER_API_KEYS']}"}
                )
                assert models.status_code == 200 and len(models.json()["data"]) >= 2
        else:
            shell.run(argv)
    assert "LADDER_API_KEYS" in shell.env  # the quick start's export carries into the loop, as in a shell

    # the user's own files: a pool of two models on loopback, and questions in the README's format
    pool = pool_yaml(fake.url, {"small": (0.1, 0.2), "large": (3.0, 15.0)})
    (tmp_path / "pool.yaml").write_text(pool.replace("  checkpoint: ckpt\n", "  tolerance: 0.05\n"))
    world.write_questions(tmp_path / "questions.jsonl", world.questions(12))
    (loop,) = fenced(section("Your own router"), "bash")
    lines = commands(loop)
    assert [argv[1] for argv in lines] == [
        "collect", "collect", "judge", "train", "evaluate", "calibrate", "latency", "serve",
    ]  # fmt: skip
    for argv in lines[:-1]:
        shell.run(argv)
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert set(report["per_model"]) == {"small", "large"} and (tmp_path / "curve.png").stat().st_size > 0
    # 24 questions are too few to tune on: evaluate says so instead of leaving the sections out silently
    assert "at least 50" in report["left_out"]["cascades"] and any("held-out questions" in v for v in report["verdict"])
    assert "tolerance:" in (tmp_path / "pool.yaml").read_text() and "latency:" in (tmp_path / "pool.yaml").read_text()
    calls_before = fake.pool.total()
    with shell.serving(lines[-1]) as url:
        answer = chat(url, shell.env["LADDER_API_KEYS"], world.questions(12)[0]["question"])
        assert answer["model"] in ("small", "large")
    assert fake.pool.total() == calls_before + 1  # the gateway's answer came from the loopback pool
    (tmp_path / "transcript.txt").write_text("\n".join(shell.transcript), encoding="utf-8")
