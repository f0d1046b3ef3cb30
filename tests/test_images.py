"""The amd64 images run under podman: the gateway alone on a stub upstream, then scoring on the CPU Triton image.

Opt-in (``LADDER_TEST_IMAGES=1``): building the images takes minutes (docs/images.md). Containers run as the
image's user with a read-only root filesystem on the host network; the upstream and the OTLP receiver are
real servers on loopback.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import image_support as isup
import openai
import pytest
from test_triton_tracing import OtlpReceiver

from ladder.export.triton_server import free_port

pytestmark = pytest.mark.slow
CLIENT_KEY = "image-test-client-key-0123"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gateway_image() -> str:
    isup.require_podman()
    return isup.image("gateway")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with isup.stub_upstream() as url:
        yield url


def test_gateway_image_runs_as_a_non_root_user_without_pytorch(gateway_image: str) -> None:
    config = json.loads(subprocess.run(["podman", "image", "inspect", gateway_image], capture_output=True,
                                       text=True, check=True).stdout)[0]["Config"]  # fmt: skip
    assert config["User"] == "10001:10001"
    probe = "import importlib.util as u, os; print(os.getuid(), u.find_spec('torch'), u.find_spec('onnxruntime'))"
    uid, torch, ort = isup.run_in(gateway_image, "-c", probe, entrypoint="python3").split(maxsplit=2)
    assert (uid, torch) == ("10001", "None") and ort.startswith("ModuleSpec"), (uid, torch, ort)


def test_the_image_carries_this_checkouts_package(gateway_image: str) -> None:
    """Every module of the installed ``ladder`` package is this checkout's, byte for byte: an image rebuilt
    after a change must not keep a cached layer with an older wheel (a stale image once lacked ``onnx``)."""
    here = {
        str(p.relative_to(isup.ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((isup.ROOT / "ladder").rglob("*.py"))
    }
    probe = (
        "import hashlib, json, pathlib, ladder\n"
        "root = pathlib.Path(ladder.__file__).parent.parent\n"
        "print(json.dumps({str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()"
        " for p in sorted((root / 'ladder').rglob('*.py'))}))\n"
    )
    there = json.loads(isup.run_in(gateway_image, "-c", probe, entrypoint="python3"))
    assert there == here, sorted(set(there.items()) ^ set(here.items()))[:10]


def test_no_build_machine_certificate_or_path_in_the_image(gateway_image: str) -> None:
    """The build mounted this machine's CA bundle, wheel folder and a pip.conf: none of them may remain."""
    inspect = subprocess.run(["podman", "image", "inspect", gateway_image], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    history = subprocess.run(["podman", "history", "--no-trunc", "--format", "{{.CreatedBy}}", gateway_image],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    for marker in ("/run/ladder-build", "PIP_CERT", "ca.crt", "/opt/wheels", "find-links"):
        assert marker not in history and marker not in inspect, marker
    check = (
        "import os, sys\n"
        "assert not os.path.exists('/etc/pip.conf') and not os.path.exists('/run/ladder-build'), 'build mounts'\n"
        "machine = ('PIP_CERT', 'PIP_FIND_LINKS', 'PIP_INDEX_URL', 'PIP_EXTRA_INDEX_URL', 'PIP_CONFIG_FILE',\n"
        "           'REQUESTS_CA_BUNDLE', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'CURL_CA_BUNDLE')\n"
        "assert not set(machine) & set(os.environ), dict(os.environ)\n"
        "bodies = [b for b in sys.argv[1:] if b]\n"
        "for top in ('/etc', '/opt', '/usr/local', '/usr/share/ca-certificates'):\n"
        "    for d, _, fs in os.walk(top):\n"
        "        for f in fs:\n"
        "            p = os.path.join(d, f)\n"
        "            if os.path.islink(p) or os.path.getsize(p) > 5_000_000: continue\n"
        "            data = open(p, 'rb').read()\n"
        "            assert not any(b.encode() in data for b in bodies), p\n"
        "print('clean')\n"
    )
    # One line from the middle of each certificate this machine adds to the system bundle (its proxy's CA).
    extra = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    bodies = [lines[len(lines) // 2] for lines in (p.read_text().splitlines() for p in extra) if len(lines) > 4]
    found = isup.run_in(gateway_image, "-c", check, *bodies, entrypoint="python3", user="0")  # root reads all
    assert found.strip() == "clean"


def test_gateway_image_answers_a_chat_through_a_loopback_upstream(
    gateway_image: str, upstream: str, tmp_path: Path
) -> None:
    pool = isup.stub_pool(tmp_path / "pool.yaml", upstream)
    port = free_port()
    with isup.container(
        gateway_image, "serve", "--host", "127.0.0.1", "--port", str(port), "--pool", "/etc/ladder/pool.yaml",
        name="ladder-test-gateway", ready_url=f"http://127.0.0.1:{port}/readyz",
        volumes=(f"{pool}:/etc/ladder/pool.yaml:ro",), env={"LADDER_API_KEYS": CLIENT_KEY},
    ) as seconds:  # fmt: skip
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=CLIENT_KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="ladder", messages=MESSAGES)
        reply = raw.parse()
    assert reply.choices[0].message.content == "ok"
    assert raw.headers["x-ladder-model"] in {m["name"] for m in isup.yaml.safe_load(pool.read_text())["models"]}
    assert seconds < 120


def test_gateway_scores_on_the_cpu_triton_image_in_one_trace(
    gateway_image: str, upstream: str, tmp_path: Path
) -> None:
    triton_image = isup.image("triton-cpu")
    pool = isup.stub_pool(tmp_path / "pool.yaml", upstream)
    http, grpc, metrics, port = free_port(), free_port(), free_port(), free_port()
    with OtlpReceiver.running() as receiver:
        otlp = f"127.0.0.1:{receiver.port}"
        trace_args = (
            "--trace-config=mode=opentelemetry", "--trace-config=rate=1", "--trace-config=level=TIMESTAMPS",
            f"--trace-config=opentelemetry,url={otlp}/v1/traces",
            "--trace-config=opentelemetry,resource=service.name=triton",
            "--trace-config=opentelemetry,bsp_schedule_delay=100",
        )  # fmt: skip
        with isup.container(
            triton_image, "tritonserver", "--model-repository=/models",
            "--backend-directory=/opt/tritonserver/backends", "--model-control-mode=explicit",
            "--load-model=router", "--strict-readiness=true", f"--http-port={http}", f"--grpc-port={grpc}",
            f"--metrics-port={metrics}", *trace_args,
            name="ladder-test-triton", ready_url=f"http://127.0.0.1:{http}/v2/health/ready",
        ) as triton_ready, isup.container(
            gateway_image, "serve", "--host", "127.0.0.1", "--port", str(port), "--pool", "/etc/ladder/pool.yaml",
            name="ladder-test-gateway-triton", ready_url=f"http://127.0.0.1:{port}/readyz",
            volumes=(f"{pool}:/etc/ladder/pool.yaml:ro",),
            env={"LADDER_API_KEYS": CLIENT_KEY, "LADDER_SCORER": "triton",
                 "LADDER_TRITON__URL": f"127.0.0.1:{grpc}", "LADDER_TRITON__ON_UNAVAILABLE": "error",
                 "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp}", "OTEL_SERVICE_NAME": "ladder-gateway",
                 "OTEL_BSP_SCHEDULE_DELAY": "100"},
        ):  # fmt: skip
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=CLIENT_KEY, max_retries=0)
            trace_id = secrets.token_hex(16)
            headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}  # the client's own trace
            reply = client.chat.completions.create(model="ladder", messages=MESSAGES, extra_headers=headers)
            assert reply.choices[0].message.content == "ok"
            seen = receiver.wait_for(trace_id, {"ladder-gateway", "triton"}, timeout=30)
        assert seen >= {"ladder-gateway", "triton"}, receiver.spans
    assert triton_ready < 120


def test_export_image_default_command_writes_a_gpu_repository(tmp_path: Path) -> None:
    """The chart's Triton init container: the export image's own command, as its non-root user on a read-only
    root, writes the gpu repository (the encoder re-exported from the image's Hugging Face weights)."""
    isup.require_podman()
    export_image = isup.image("export")
    out = tmp_path / "models"
    out.mkdir()
    out.chmod(0o777)  # the image's user (10001) writes here
    cmd = [*isup.PODMAN, "run", "--rm", *isup.LIMITS, "--read-only", "--tmpfs", "/tmp", "--network", "none",
           "--cap-drop", "ALL", "--volume", f"{out}:/models", export_image]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "exported gpu repository to /models/repository" in result.stdout + result.stderr
    repository = out / "repository"
    assert {p.name for p in repository.iterdir()} >= {"encoder", "head", "router", "tokenizer"}
    assert (repository / "encoder" / "1" / "model.onnx").stat().st_size > 1_000_000
