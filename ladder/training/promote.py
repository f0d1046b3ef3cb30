"""Promotion: swap a checkpoint into the folder the gateway reads, then roll the gateway's Deployment."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ladder.core.checkpoint import Checkpoint
from ladder.core.errors import CheckpointError, ConfigError, LadderError

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class RolloutError(LadderError):
    """The Kubernetes API refused or failed the rollout of the gateway Deployment."""


def install(candidate: Path, target: Path) -> Path | None:
    """Make ``candidate`` the checkpoint at ``target``; returns where the previous one was kept.

    A symlink ``target`` is swapped in one atomic rename (point it at versioned folders for that). A
    folder is renamed aside and the candidate renamed in: two renames on one filesystem, with the old
    one put back if the second fails. Either way the gateway never reads a half-written checkpoint.
    """
    Checkpoint.load(candidate)  # verified (manifest, head checksum) before it goes anywhere
    target = target.absolute()
    if candidate.resolve().parent != target.parent.resolve():
        raise CheckpointError(f"{candidate}: must be trained beside {target} (same folder, same filesystem)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    if target.is_symlink():
        versioned = target.with_name(f"{target.name}.{stamp}")
        os.replace(candidate, versioned)
        link = target.with_name(f".{target.name}.link-{stamp}")
        os.symlink(versioned.name, link)
        previous = target.resolve()
        os.replace(link, target)
        return previous
    previous = target.with_name(f"{target.name}.previous")
    if target.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(target, previous)
    try:
        os.replace(candidate, target)
    except OSError:
        if previous.exists() and not target.exists():
            os.replace(previous, target)
        raise
    return previous if previous.exists() else None


@dataclass(frozen=True)
class DeploymentRef:
    """The gateway Deployment to roll, and how to reach the API server."""

    name: str
    namespace: str
    kubeconfig: Path | None = None  # None: the pod's service account (in-cluster), else this file


def _api(ref: DeploymentRef) -> Any:
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise ConfigError(
            "rolling the gateway needs the kubernetes client: pip install 'ladder-router[cluster]'"
        ) from exc
    try:
        if ref.kubeconfig is not None:
            api_client = config.new_client_from_config(config_file=str(ref.kubeconfig))  # type: ignore[no-untyped-call]
        else:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api_client = client.ApiClient()
    except config.ConfigException as exc:
        raise ConfigError(f"Kubernetes configuration: {exc}") from exc
    return client.AppsV1Api(api_client)


def rollout_restart(ref: DeploymentRef, now: datetime | None = None) -> dict[str, Any]:
    """What ``kubectl rollout restart`` does: stamp the pod template so that the pods are replaced."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = _api(ref)
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    where = f"deployment {ref.namespace}/{ref.name}"
    try:
        current = api.read_namespaced_deployment(ref.name, ref.namespace)
        result = api.patch_namespaced_deployment(ref.name, ref.namespace, patch)
    except ApiException as exc:
        raise RolloutError(f"{where}: the Kubernetes API answered {exc.status} {exc.reason}") from exc
    except HTTPError as exc:
        raise RolloutError(f"{where}: cannot reach the Kubernetes API ({exc})") from exc
    finally:
        api.api_client.close()
    return {
        "deployment": where,
        "restarted_at": stamp,
        "generation_before": current.metadata.generation,
        "generation_after": result.metadata.generation,
    }
