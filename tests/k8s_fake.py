"""A real HTTP server playing the two Kubernetes API endpoints `ladder retrain` calls on a Deployment."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN = "retrain-service-account-token"
PATH = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


@dataclass
class FakeKubernetes:
    """Deployments by (namespace, name); every request seen; ``refuse`` answers 403 to PATCH."""

    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    refuse: bool = False

    def add(self, namespace: str, name: str) -> None:
        self.deployments[(namespace, name)] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}, "annotations": {"checksum/config": "abc"}},
                    "spec": {"containers": [{"name": "gateway", "image": "ladder:1"}]},
                },
            },
        }

    @property
    def patches(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "PATCH"]


def _status(code: int, reason: str, message: str) -> JSONResponse:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message}
    return JSONResponse(body, status_code=code)


def fake_kubernetes_app(state: FakeKubernetes) -> Starlette:
    async def deployment(request: Request) -> JSONResponse:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        raw = await request.body()
        state.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "content_type": request.headers.get("content-type"),
                "authorization": request.headers.get("authorization"),
                "body": json.loads(raw) if raw else None,
            }
        )
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _status(401, "Unauthorized", "no valid token")
        found = state.deployments.get((namespace, name))
        if found is None:
            return _status(404, "NotFound", f'deployments.apps "{name}" not found')
        if request.method == "PATCH":
            if state.refuse:
                return _status(403, "Forbidden", "cannot patch deployments")
            if request.headers.get("content-type") != "application/strategic-merge-patch+json":
                return _status(415, "UnsupportedMediaType", "unsupported patch type")
            patch = json.loads(raw)
            annotations = patch["spec"]["template"]["metadata"]["annotations"]
            found["spec"]["template"]["metadata"]["annotations"].update(annotations)
            found["metadata"]["generation"] += 1
        return JSONResponse(found)

    return Starlette(routes=[Route(PATH, deployment, methods=["GET", "PATCH"])])


def write_kubeconfig(path: Path, server: str, namespace: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "retrain", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "retrain", "namespace": namespace}}
        ],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
