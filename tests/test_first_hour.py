"""What a new user meets first: help, `ladder serve`'s start-up, a dead upstream in collect, output paths."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from collect_support import world
from collect_support.harness import Loopback
from collect_support.pool_server import pool_yaml
from typer.testing import CliRunner

from ladder.cli.main import app
from ladder.core.errors import ConfigError
from ladder.core.loopback import free_port
from ladder.core.pool import load_pool
from ladder.gateway.settings import load_settings
from ladder.gateway.startup import banner, bind, check_keys
from ladder.training.importers import IMPORTERS
from tests.support import REPO, ladder

pytest_plugins = ["collect_support.fixtures"]


def command_names() -> list[list[str]]:
    names = [[c.name or (c.callback.__name__ if c.callback else "")] for c in app.registered_commands]
    bench = next(g.typer_instance for g in app.registered_groups if g.name == "bench")
    return names + [["bench", c.name or ""] for c in bench.registered_commands]


def test_help_shows_no_bool_placeholder_and_every_import_format() -> None:
    runner = CliRunner()
    for name in command_names():
        shown = runner.invoke(app, [*name, "--help"], env={"COLUMNS": "80"})
        assert shown.exit_code == 0, (name, shown.output)
        assert "<bool>" not in shown.output, name
        assert "usage" in shown.output.lower()  # typer's "Usage", or argparse's for the pass-through runs
    import_help = runner.invoke(app, ["import", "--help"], env={"COLUMNS": "200"}).output
    assert all(fmt in import_help for fmt in IMPORTERS)



def test_serve_banner_names_pool_checkpoint_models_and_urls(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool_file = loopback.pool_file.parent / "keyed.yaml"
    pool_file.write_text(pool_yaml(loopback.url, world.MODELS, key_env="LADDER_TEST_UNSET_KEY"), encoding="utf-8")
    monkeypatch.delenv("LADDER_TEST_UNSET_KEY", raising=False)
    checkpoint = REPO / "ladder" / "defaults" / "checkpoint"
    settings = load_settings(None, pool=pool_file, port=0, auth_disabled=True, checkpoint=checkpoint)
    pool = load_pool(settings.pool, settings.checkpoint)
    assert pool.routing.checkpoint == checkpoint.resolve()  # --checkpoint wins over routing.checkpoint
    lines = banner(pool, settings, 8123)
    assert f"pool:       {pool_file} (3 models)" in lines and f"checkpoint: {checkpoint.resolve()}" in lines
    assert "models:     small (cloud), large (cloud), judge (cloud)" in lines
    assert "serving:    http://127.0.0.1:8123/v1 (OpenAI: /v1/chat/completions; Anthropic: /v1/messages)" in lines
    assert "playground: http://127.0.0.1:8123/" in lines
    warnings = check_keys(pool, settings)
    assert warnings == [
        "LADDER_TEST_UNSET_KEY is not set (upstream.api_key_env of small, large, judge): requests to them "
        "would go without an Authorization header"
    ]
    strict = load_settings(None, pool=pool_file, auth_disabled=True, production=True)
    with pytest.raises(ConfigError, match=r"production mode: 3 pool model\(s\) have no key"):
        check_keys(pool, strict)
    monkeypatch.setenv("LADDER_TEST_UNSET_KEY", "sk-test")
    assert check_keys(pool, strict) == []


def test_a_busy_port_is_one_clear_error(loopback: Loopback, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = load_settings(None, port=port, auth_disabled=True)
        with pytest.raises(ConfigError, match=rf"port {port} on 127.0.0.1 is already in use .* --port N"):
            bind(settings)
        result = subprocess.run(
            [sys.executable, "-m", "ladder.cli", "serve", "--pool", str(loopback.pool_file), "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "LADDER_AUTH_DISABLED": "true", "COLUMNS": "200"},
        )
    assert result.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr and "startup complete" not in result.stderr


def test_collect_gives_up_on_a_dead_upstream_and_says_so(tmp_path: Path, loopback: Loopback) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    pool = tmp_path / "pool.yaml"
    live, gone = pool_yaml(loopback.url, {"small": (0.1, 0.2)}), pool_yaml(dead, {"large": (3.0, 15.0)})
    pool.write_text(live + gone.split("models:\n", 1)[1], encoding="utf-8")
    questions = world.write_questions(tmp_path / "q.jsonl", world.questions(10))
    store = tmp_path / "new" / "folder" / "answers.db"  # parent folders are created
    args = ["--pool", str(pool), "--questions", str(questions), "--store", str(store), "--retries", "0"]
    dry = ladder("collect", *args, "--dry-run", "--concurrency", "1")
    assert dry.returncode == 1, dry.stderr
    assert "! no answer from large" in dry.stderr and "made from nothing" in dry.stderr
    run = ladder("collect", *args, "--concurrency", "1")
    assert run.returncode == 1, run.stderr
    said = " ".join(run.stderr.split())
    assert "stopped asking large: 3 calls in a row gave no answer" in said and f"({dead}/large/v1)" in said
    assert "calls not made" in said and "Traceback" not in said
    # small answered everything; large was asked 3 times in this run, not 15
    resumed = ladder("collect", *args, "--models", "small")
    assert resumed.returncode == 0 and "all 20 calls already stored (20 questions x 1 models)" in " ".join(
        resumed.stderr.split()
    )


def test_reports_are_not_overwritten_without_force(tmp_path: Path) -> None:
    existing = tmp_path / "report.json"
    existing.write_text("{}", encoding="utf-8")
    result = ladder(
        "evaluate", "--checkpoint", str(tmp_path / "none"), "--data", str(tmp_path / "none.csv"),
        "--json", str(existing),
    )  # fmt: skip
    assert result.returncode == 2 and "already exists; choose another path, or pass --force" in result.stderr
    assert existing.read_text(encoding="utf-8") == "{}"
