"""Pushing to a registry and pulling back by digest: scripts/push_images.sh against a real OCI registry on loopback.

A two-architecture manifest list of two tiny images (a file each, no base) goes through the very script
``make images PUSH=...`` runs, to a registry started by scripts/local_registry.sh on a free port. The digest
the script records must be the registry's (the list as it serves it), and pulling that digest back must give
each architecture's image unchanged. Seconds, not minutes; skipped where podman, buildah or Debian's
``docker-registry`` is missing (scripts/install_images.sh; ``apt-get install docker-registry``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ladder.core.loopback import free_port

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("podman", "buildah", "docker-registry")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="needs podman, buildah and docker-registry (scripts/install_images.sh; apt-get install docker-registry)",
)
TAG = "0.0.0-test"
IMAGE = "registry-probe"  # pushed as <prefix>/ladder-registry-probe:TAG, as the real images are
LIST_TYPES = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"


def sh(*cmd: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300,
                            env={**os.environ, **(env or {})})  # fmt: skip
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    addr = f"127.0.0.1:{free_port()}"
    env = {"REGISTRY_ADDR": addr, "REGISTRY_DIR": str(tmp_path / "registry")}
    sh("bash", str(ROOT / "scripts/local_registry.sh"), "start", env=env)
    try:
        yield addr
    finally:
        sh("bash", str(ROOT / "scripts/local_registry.sh"), "stop", env=env)


@pytest.fixture
def local_list(tmp_path: Path) -> Iterator[dict[str, str]]:
    """localhost/ladder-registry-probe:TAG, a manifest list over an amd64 and an arm64 image; their image IDs."""
    name = f"localhost/ladder-{IMAGE}:{TAG}"
    ids: dict[str, str] = {}
    for arch in ("amd64", "arm64"):
        payload = tmp_path / f"{arch}.txt"
        payload.write_text(f"ladder registry probe for {arch}\n")
        ctr = sh("buildah", "from", "--quiet", "scratch").strip()
        sh("buildah", "copy", "--quiet", ctr, str(payload), "/probe.txt")
        sh("buildah", "config", "--arch", arch, "--os", "linux", ctr)
        ids[arch] = sh("buildah", "commit", "--quiet", "--rm", ctr, f"{name}-{arch}").strip()
    subprocess.run(["podman", "manifest", "rm", name], capture_output=True, check=False)
    sh("podman", "manifest", "create", name)
    for arch in ids:
        sh("podman", "manifest", "add", name, f"containers-storage:{name}-{arch}")
    try:
        yield ids
    finally:
        subprocess.run(["podman", "manifest", "rm", name], capture_output=True, check=False)
        for arch in ids:
            subprocess.run(["podman", "rmi", "-f", f"{name}-{arch}"], capture_output=True, check=False)


def test_a_pushed_list_is_pinned_by_the_registrys_digest_and_pulls_back(
    registry: str, local_list: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    prefix = f"{registry}/ladder-router"
    env = {"PUSH": prefix, "IMAGES": IMAGE, "TAG": TAG, "PUSH_TLS_VERIFY": "false", "IMAGES_OUT": str(out)}
    printed = sh("bash", str(ROOT / "scripts/push_images.sh"), env=env)
    digest = (out / f"{IMAGE}.digest").read_text().strip()
    repo = f"{prefix}/ladder-{IMAGE}"
    assert f"pushed {repo}:{TAG}@{digest}" in printed

    # the registry serves the list under that digest: the sha256 of the very bytes it returns for the tag
    served = httpx.get(f"http://{registry}/v2/ladder-router/ladder-{IMAGE}/manifests/{TAG}",
                       headers={"Accept": LIST_TYPES}, timeout=10)  # fmt: skip
    served.raise_for_status()
    assert digest == "sha256:" + hashlib.sha256(served.content).hexdigest()
    assert served.headers["Docker-Content-Digest"] == digest
    platforms = {m["platform"]["architecture"] for m in served.json()["manifests"]}
    assert platforms == {"amd64", "arm64"}

    # pulled back by digest into an empty store (every blob comes from the registry), each architecture is the
    # image that was pushed: the same config, so the same image ID
    pulled: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="ladder-run-") as runroot:  # podman wants a runroot under 50 characters
        store = ["podman", "--root", str(tmp_path / "store"), "--runroot", runroot, "--storage-driver", "vfs"]
        for arch in local_list:
            ref = f"{repo}@{digest}"
            sh(*store, "pull", "--quiet", "--tls-verify=false", "--arch", arch, ref)
            pulled[arch] = sh(*store, "image", "inspect", "--format", "{{.Id}}", ref).strip()
            sh(*store, "rmi", "--force", ref)  # the list resolves to one architecture per pull
    assert pulled == local_list
