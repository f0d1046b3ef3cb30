"""Shared by the image tests: the built images' names, podman containers on the host network, a stub upstream."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from ladder.core.router import default_pool_path
from ladder.export.triton_server import free_port

ROOT = Path(__file__).resolve().parent.parent
OPT_IN = "LADDER_TEST_IMAGES"  # the image tests build (minutes) and run containers: opt in with =1
TAG = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
PODMAN = ["podman", "--runtime", "runc"]  # crun cannot set RLIMIT_NPROC on these machines
# podman's default limits (nofile 1M) exceed what a process without CAP_SYS_RESOURCE may set here: ask for less
LIMITS = ["--ulimit", "nofile=8192:8192", "--ulimit", "nproc=4096:4096"]


def image(name: str, arch: str = "amd64") -> str:
    """The local name of one built image (``make images``), built now when missing."""
    ref = f"localhost/ladder-{name}:{TAG}-{arch}"
    if subprocess.run(["podman", "image", "exists", ref], check=False).returncode != 0:
        env = {**os.environ, "ARCHES": arch, "IMAGES": name}
        build = subprocess.run(["bash", str(ROOT / "scripts/build_images.sh")], env=env, check=False,
                               capture_output=True, text=True)  # fmt: skip
        assert build.returncode == 0, build.stderr[-4000:]
    return ref


def require_podman() -> None:
    """Skip unless opted in; then install buildah/podman and the Debian base (scripts/install_images.sh)."""
    if os.environ.get(OPT_IN) != "1":
        pytest.skip(f"image tests build and run OCI images (minutes): set {OPT_IN}=1")
    if shutil.which("podman") is None or shutil.which("buildah") is None:
        subprocess.run(["bash", str(ROOT / "scripts/install_images.sh"), "amd64"], check=True)


def run_in(ref: str, *args: str, entrypoint: str | None = None, arch: str = "amd64", user: str | None = None) -> str:
    """Run one command in a throwaway container; its stdout (fails the test on a non-zero exit)."""
    extra = (["--entrypoint", entrypoint] if entrypoint else []) + (["--user", user] if user else [])
    cmd = [*PODMAN, "run", "--rm", *LIMITS, "--arch", arch, "--read-only", "--network", "none", *extra, ref, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr[-4000:]}"
    return result.stdout


@contextmanager
def container(ref: str, *args: str, name: str, ready_url: str, volumes: tuple[str, ...] = (),
              env: dict[str, str] | None = None, timeout: float = 120) -> Iterator[float]:  # fmt: skip
    """A detached container on the host network, non-root and read-only; yields its seconds to ready."""
    subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True, check=False)
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()] + [f"--volume={v}" for v in volumes]
    start = time.monotonic()
    cmd = [*PODMAN, "run", "-d", *LIMITS, "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *flags, ref, *args]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    try:
        while True:
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = subprocess.run([*PODMAN, "inspect", "--format", "{{.State.Running}}", name],
                                   capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
            if state != "true" or time.monotonic() - start > timeout:
                pytest.fail(f"{name} did not become ready at {ready_url}:\n{logs(name)}")
            time.sleep(0.2)
        yield time.monotonic() - start
    finally:
        subprocess.run([*PODMAN, "rm", "-f", "-t", "2", name], capture_output=True, check=False)


def logs(name: str) -> str:
    result = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True, check=False)
    return (result.stdout + result.stderr)[-6000:]


@contextmanager
def stub_upstream() -> Iterator[str]:
    """An OpenAI-compatible upstream on loopback answering every chat at once (``ladder.bench.stub``)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ladder.bench.stub", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(f"{url}/v1/chat/completions", json={}, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stub_pool(path: Path, upstream: str) -> Path:
    """The shipped pool with every model sent to ``upstream`` (no provider keys)."""
    pool = yaml.safe_load(default_pool_path().read_text())
    for model in pool["models"]:
        model["upstream"] = {"base_url": f"{upstream}/v1", "model": model["name"]}
    path.write_text(yaml.safe_dump(pool, sort_keys=False))
    path.chmod(0o644)
    return path
