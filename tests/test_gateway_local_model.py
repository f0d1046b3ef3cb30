"""A real local model (SmolLM2-135M behind llama.cpp's OpenAI server) as the on-prem member of a pool."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from gateway_support.common import API_KEY
from gateway_support.upstream import FakeUpstream, fake_upstream_app
from openai.types.chat import ChatCompletionMessageParam

from ladder.bench.llama_server import MODELS_DIR
from ladder.bench.llama_server import available as llama_server_available
from ladder.bench.llama_server import llama_server as run_llama_server
from ladder.bench.server_thread import ServerThread
from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.settings import load_settings
from ladder.training.prior_checkpoint import make_checkpoint

GGUF = Path(os.environ.get("LADDER_LOCAL_GGUF", MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"))
pytestmark = pytest.mark.skipif(
    not llama_server_available(GGUF), reason=f"no llama.cpp server or {GGUF.name}: run scripts/install_llama_cpp.sh"
)

LOCAL = "smollm2-local"  # on-prem: llama.cpp on loopback
CLOUD = "big-cloud"  # cloud: the fake upstream, more likely right, so it wins unless the request is sensitive
ALIAS = "smollm2-135m-instruct"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France? Answer in one word."}
]
SENSITIVE = {"x-ladder-sensitive": "true"}


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on loopback; its OpenAI base URL (``.../v1``)."""
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with run_llama_server(GGUF, ALIAS, log, threads=2) as base_url:
        yield base_url


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
