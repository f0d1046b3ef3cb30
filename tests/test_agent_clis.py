"""The real agent CLIs against the gateway and a loopback upstream: Claude Code in print mode over
``/v1/messages``, Codex in exec mode over ``/v1/responses``, each running one tool and answering with its output.

The CLIs are installed by ``scripts/install_agent_clis.sh`` (called by ``scripts/test_deps.sh``); without
them these tests are skipped with that instruction as the reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gateway_support.agent_reply import FINAL_PREFIX
from gateway_support.common import API_KEY, RunningGateway
from gateway_support.upstream import FakeUpstream

pytest_plugins = ["gateway_support.fixtures"]
pytestmark = pytest.mark.slow

CLI_BIN = Path(__file__).resolve().parents[1] / ".tools" / "agent-clis" / "node_modules" / ".bin"
SECRET = "the secret word is PELICAN"
TOOL_MODELS = ("mid-cloud", "vision-pro")  # the models a request with tools may reach
RUN_TIMEOUT_S = 240


def cli(name: str) -> Path:
    path = CLI_BIN / name
    if not path.exists():
        pytest.skip(f"{path} is not installed: run scripts/install_agent_clis.sh")
    return path


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "note.txt").write_text(SECRET + "\n", encoding="utf-8")
    return work


@pytest.fixture()
def agent_upstream(upstream: FakeUpstream) -> Iterator[Callable[[str, dict[str, str]], FakeUpstream]]:
    """The fake upstream's tool-capable models in ``agent`` mode, calling the tool a test names."""

    def arm(tool: str, arguments: dict[str, str]) -> FakeUpstream:
        for model in TOOL_MODELS:
            upstream.set(model, "agent")
        upstream.agent_call = (tool, arguments)
        return upstream

    yield arm


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(cwd.parent / "home")}
    Path(base["HOME"]).mkdir(exist_ok=True)
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{command[0]} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def claude_env(gateway: RunningGateway) -> dict[str, str]:
    """What docs/gateway.md tells Claude Code users to set, telemetry and updates off."""
    return {
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_MODEL": "ladder-1",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "ladder-1",
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "128000",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "8192",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def test_claude_code_reads_a_file_through_the_gateway(
    gateway: RunningGateway, agent_upstream: Callable[[str, dict[str, str]], FakeUpstream], workdir: Path
) -> None:
    claude = cli("claude")
    upstream = agent_upstream("Read", {"file_path": str(workdir / "note.txt")})
    done = run([str(claude), "-p", "What does note.txt say?"], workdir, claude_env(gateway))
    assert FINAL_PREFIX in done.stdout and "PELICAN" in done.stdout
    first, last = upstream.seen[0].body, upstream.seen[-1].body
    assert first["stream"] is True and first["max_tokens"] == 8192
    roles = [m["role"] for m in first["messages"]]
    assert roles[0] == "system" and roles.count("system") == 1  # Claude Code's system turns folded in
    assert "Claude" in first["messages"][0]["content"]
    assert {t["function"]["name"] for t in first["tools"]} >= {"Read", "Bash", "Edit"}
    assert last["messages"][-1]["role"] == "tool" and "PELICAN" in last["messages"][-1]["content"]
    assert {s.model for s in upstream.seen} <= set(TOOL_MODELS)


def codex_config(gateway: RunningGateway) -> str:
    """What docs/gateway.md tells Codex users to put in ``~/.codex/config.toml``."""
    return f"""model = "ladder-1"
model_provider = "ladder"

[model_providers.ladder]
name = "Ladder"
base_url = "{gateway.url}/v1"
env_key = "LADDER_API_KEY"
wire_api = "responses"
"""


def test_codex_runs_a_command_through_the_gateway(
    gateway: RunningGateway,
    agent_upstream: Callable[[str, dict[str, str]], FakeUpstream],
    workdir: Path,
    tmp_path: Path,
) -> None:
    codex = cli("codex")
    upstream = agent_upstream("exec_command", {"cmd": "cat note.txt"})
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(codex_config(gateway), encoding="utf-8")
    # Codex refuses to install its sandbox helper under a temporary folder (where pytest's tmp_path is), so
    # the command, a fixed `cat` inside this test's own folder, runs unsandboxed.
    command = [
        str(codex),
        "exec",
        "--skip-git-repo-check",
        "--sandbox",
        "danger-full-access",
        "What does note.txt say?",
    ]
    done = run(command, workdir, {"CODEX_HOME": str(home), "LADDER_API_KEY": API_KEY})
    assert FINAL_PREFIX in done.stdout and "PELICAN" in done.stdout
    first, last = upstream.seen[0].body, upstream.seen[-1].body
    assert first["stream"] is True and first["messages"][0]["role"] == "system"
    assert "exec_command" in {t["function"]["name"] for t in first["tools"]}
    call = last["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "exec_command"
    result = last["messages"][-1]
    assert result["role"] == "tool" and result["tool_call_id"] == call["id"]
    assert "PELICAN" in last["messages"][-1]["content"]
