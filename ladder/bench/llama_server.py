"""A real local LLM on loopback: llama.cpp's OpenAI-compatible server over a GGUF file, for runs and tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ladder.core.loopback import HOST, free_port, stop_process, wait_until_ready

REPO = Path(__file__).resolve().parents[2]
LLAMA_VENV = Path(os.environ.get("LADDER_LLAMA_VENV", REPO / ".venv-llama"))
MODELS_DIR = Path(os.environ.get("LADDER_MODELS_DIR", REPO / ".ladder-models"))
START_TIMEOUT_S = 120.0
INSTALL_HINT = "run scripts/install_llama_cpp.sh"


def llama_python() -> Path:
    """The interpreter of the venv that has ``llama_cpp.server`` (``$LADDER_LLAMA_VENV``, default .venv-llama)."""
    return LLAMA_VENV / "bin" / "python"


def available(*ggufs: Path) -> bool:
    """Whether llama.cpp's server and every named model file are installed."""
    return llama_python().is_file() and all(path.is_file() for path in ggufs)


@contextmanager
def llama_server(
    gguf: Path, alias: str, log: Path, threads: int = 1, chat_format: str | None = None
) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its OpenAI base URL (``…/v1``)."""
    if not llama_python().is_file():
        raise FileNotFoundError(f"{llama_python()} is missing: {INSTALL_HINT}")
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf} is missing: {INSTALL_HINT}")
    port = free_port()
    command = [
        str(llama_python()), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
        "--host", HOST, "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads),
    ]  # fmt: skip
    if chat_format:
        command += ["--chat_format", chat_format]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://{HOST}:{port}/v1"
    try:
        wait_until_ready(f"{base_url}/models", process, log, START_TIMEOUT_S, f"llama.cpp server for {alias}")
        yield base_url
    finally:
        stop_process(process, group=True)
