"""A real local model (SmolLM2-135M behind llama.cpp's OpenAI server) as the on-prem member of a pool."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from gateway_support.checkpoint import make_checkpoint
from gateway_support.common import API_KEY
from gateway_support.servers import ServerThread
from gateway_support.upstream import FakeUpstream, fake_upstream_app
from openai.types.chat import ChatCompletionMessageParam

from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
LLAMA_VENV = Path(os.environ.get("LADDER_LLAMA_VENV", ROOT / ".venv-llama"))
LLAMA_PYTHON = LLAMA_VENV / "bin" / "python"
GGUF = Path(os.environ.get("LADDER_LOCAL_GGUF", ROOT / ".ladder-models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
pytestmark = pytest.mark.skipif(
    not LLAMA_PYTHON.is_file(),
    reason=f"no llama.cpp server: {LLAMA_VENV} is absent (run scripts/install_llama_cpp.sh)",
)

LOCAL = "smollm2-local"  # on-prem: llama.cpp on loopback
CLOUD = "big-cloud"  # cloud: the fake upstream, more likely right, so it wins unless the request is sensitive
ALIAS = "smollm2-135m-instruct"
START_TIMEOUT_S = 60.0
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France? Answer in one word."}
]
SENSITIVE = {"x-ladder-sensitive": "true"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on loopback; its OpenAI base URL (``.../v1``)."""
    assert GGUF.is_file(), f"{GGUF} is missing: run scripts/install_llama_cpp.sh"
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        str(LLAMA_PYTHON), "-m", "llama_cpp.server",
        "--model", str(GGUF), "--model_alias", ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "2",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"llama.cpp server exited ({process.returncode}):\n{log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llama.cpp server not ready in {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield base_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Stack:
    """The real gateway over a pool of the local model and a fake cloud upstream."""

    gateway_url: str
    cloud: FakeUpstream

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.gateway_url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def pool_data(llama_url: str, cloud_url: str, checkpoint: Path) -> dict[str, Any]:
    """The pool as a user would write it: the llama.cpp server is just another OpenAI-compatible upstream."""
    local = {
        "name": LOCAL,
        "upstream": {"base_url": llama_url, "model": ALIAS},
        "price": {"input_per_1m": 0.01, "output_per_1m": 0.02},
        "context_window": 2048,
        "capabilities": ["text"],
        "locality": "on-prem",
        "expected_output_tokens": 64,
    }
    cloud = {
        "name": CLOUD,
        "upstream": {"base_url": f"{cloud_url}/{CLOUD}/v1", "model": f"upstream-{CLOUD}"},
        "price": {"input_per_1m": 3.0, "output_per_1m": 15.0},
        "context_window": 128000,
        "capabilities": ["text", "tools", "json"],
        "locality": "cloud",
    }
    return {
        "version": 1,
        "routing": {"checkpoint": str(checkpoint), "tolerance": 0.0},
        "models": [local, cloud],
    }


@pytest.fixture(scope="module")
def stack(llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("local-pool")
    make_checkpoint(directory / "checkpoint", [LOCAL, CLOUD], [-1.0, 2.0])
    pool = directory / "pool.yaml"
    cloud = FakeUpstream()
    with ServerThread(fake_upstream_app(cloud)) as cloud_server:
        data = pool_data(llama_server, cloud_server.url, directory / "checkpoint")
        pool.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        settings = load_settings(
            None, pool=pool, api_keys=[API_KEY], attempt_timeout_s=60.0, deadline_s=90.0, retries=0
        )
        app = create_app(settings, router=Router.from_pool(load_pool(pool)))
        with ServerThread(app) as gateway:
            yield Stack(gateway.url, cloud)


def test_without_the_marker_the_request_goes_to_the_cloud_model(stack: Stack) -> None:
    stack.cloud.reset()
    raw = stack.client().chat.completions.with_raw_response.create(model="ladder", messages=MESSAGES)
    assert raw.headers["x-ladder-model"] == CLOUD
    assert raw.parse().choices[0].message.content == f"{CLOUD} says hi"
    assert stack.cloud.count(CLOUD) == 1


def test_a_sensitive_request_is_answered_by_the_local_model(stack: Stack) -> None:
    stack.cloud.reset()
    raw = stack.client().chat.completions.with_raw_response.create(
        model="ladder", messages=MESSAGES, max_tokens=24, temperature=0, extra_headers=SENSITIVE
    )
    completion = raw.parse()
    assert raw.headers["x-ladder-model"] == raw.headers["x-ladder-routed-model"] == LOCAL
    assert completion.model == LOCAL
    content = completion.choices[0].message.content
    assert content and content.strip() and "says hi" not in content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert stack.cloud.seen == []  # nothing left the premises


def test_a_sensitive_stream_is_answered_by_the_local_model(stack: Stack) -> None:
    stack.cloud.reset()
    raw = stack.client().chat.completions.with_raw_response.create(
        model="ladder",
        messages=MESSAGES,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=SENSITIVE,
    )
    assert raw.headers["x-ladder-model"] == raw.headers["x-ladder-routed-model"] == LOCAL
    pieces: list[str] = []
    finish: set[str] = set()
    models: set[str] = set()
    for chunk in raw.parse():
        models.add(chunk.model)
        pieces.extend(choice.delta.content for choice in chunk.choices if choice.delta.content)
        finish.update(choice.finish_reason for choice in chunk.choices if choice.finish_reason)
    assert len(pieces) >= 2 and "".join(pieces).strip()  # generated token by token, for real
    assert "says hi" not in "".join(pieces)
    assert finish & {"stop", "length"}
    assert models == {LOCAL}
    # No usage assertion here: llama-cpp-python's server ignores stream_options.include_usage (0.3.36).
    assert stack.cloud.seen == []
