"""A built wheel is a complete router: installed into a fresh venv, `ladder route` and `ladder serve` work
from a folder outside the repository, on the pool and checkpoint the wheel carries as package data."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ladder.core.loopback import free_port, stop_process, wait_until_ready
from tests.support import REPO

PROMPT = "東京から大阪まで新幹線で何時間かかりますか？"


def _source_tree(dst: Path) -> Path:
    """The files git would ship (tracked and new, ignored ones left out): a clean tree to build from."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not source.is_symlink() and not name.startswith("tests/"):
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dst / name)
    return dst


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding only the wheel; its dependencies come from this venv's site-packages."""
    root = tmp_path_factory.mktemp("wheel")
    source = _source_tree(root / "src")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = (root / "dist").glob("ladder_router-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {
        "ladder/defaults/pool.yaml",
        "ladder/defaults/checkpoint/head.onnx",
        "ladder/defaults/checkpoint/manifest.json",
    } <= names
    # one namespace: nothing else lands on a user's import path (no `service`, `cli`, `training`, ...)
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"ladder"}
    assert "ladder/gateway/static/index.html" in names
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A plain path line: this venv's packages come after the wheel's, and its .pth files (the editable
    # checkout's finder among them) are not run.
    (Path(purelib) / "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    yield venv


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADDER_") or k == "LADDER_HOME"}
    return {**env, "PYTHONPATH": "", "HOME": os.environ.get("HOME", str(cwd)), "COLUMNS": "200"}


def test_the_wheel_routes_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import ladder.core.router as r, ladder.core.pool as p; print(r.__file__); "
            "print(p.load_pool(r.default_pool_path()).routing.checkpoint)",
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(Path(w).is_relative_to(installed) for w in where), where
    result = subprocess.run(
        [str(installed / "bin" / "ladder"), "route", "--json", PROMPT],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["model"] in {c["name"] for c in decision["candidates"]}
    assert len(decision["candidates"]) == 8


def test_the_wheel_serves_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**_env(tmp_path), "LADDER_AUTH_DISABLED": "true", "LADDER_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [str(installed / "bin" / "ladder"), "serve", "--port", str(port)], cwd=tmp_path, env=env
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", process, None, 90, "ladder serve")
        routed = httpx.post(
            f"http://127.0.0.1:{port}/v1/route", json={"model": "ladder", "prompt": PROMPT}, timeout=30
        )
        assert routed.status_code == 200, routed.text
        assert routed.json()["model"] in {
            m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]
        }
    finally:
        stop_process(process, 30)
