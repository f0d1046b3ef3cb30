"""Shared by the Triton tests: a small random checkpoint, a cached cpu export, and a server on loopback."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ladder.core.checkpoint import Checkpoint, EncoderIdentity, Manifest, TrainingRecord, save_checkpoint
from ladder.core.encoder import EncoderInfo, EncoderNotBuilt, Tokenizer
from ladder.core.home import encoder_dir
from ladder.core.scoring import EmbeddedScorer
from ladder.export.triton_server import TritonNotInstalled, TritonServer

ENCODER = "multilingual-e5-small"
LABELS = ("small-model", "medium-model", "large-model")
PROMPTS = {
    "english": "How much protein should an adult eat per day?",
    "japanese": "東京から大阪まで新幹線で何時間かかりますか？",
    "chinese": "请解释一下量子纠缠的基本原理。",
    "code": "def merge(a, b):\n    return sorted(a + b)  # make this linear time",
    "one_token": "a",
    "long": "Prove that there are infinitely many primes, then generalise the argument. " * 60,
}


def workdir() -> Path:
    """One temporary folder per test process, removed at exit."""
    return _workdir()


@functools.cache
def _workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ladder-triton-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def require_encoder() -> EncoderInfo:
    """The built encoder, or skip (it is built at setup: ``python -m ladder.export.encoder_build``)."""
    try:
        return EncoderInfo.load(encoder_dir(ENCODER))
    except EncoderNotBuilt as exc:
        pytest.skip(str(exc))


def make_checkpoint(directory: Path, dim: int, seed: int = 0) -> Checkpoint:
    """A checkpoint with a random head (PCA 16-d, two MLP members) over ``LABELS``."""
    import torch

    from ladder.training.head_model import MLP, RouterHead, export_head

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    components = rng.normal(size=(dim, 16)).astype(np.float32) * 4
    members = [MLP(16, 32, len(LABELS), 0.0) for _ in range(2)]
    head = RouterHead(
        np.zeros(dim, np.float32),
        components,
        members,
        np.ones(len(LABELS), np.float32),
        np.zeros(len(LABELS), np.float32),
    )
    onnx_path = directory.parent / f"{directory.name}-head.onnx"
    export_head(head, onnx_path)
    manifest = Manifest(
        models=list(LABELS),
        encoder=EncoderIdentity(name=ENCODER, dim=dim),
        head_sha256="",
        training=TrainingRecord(
            data_files=[], data_digest="random", questions=0, seed=seed, created_at="1970-01-01T00:00:00Z"
        ),
    )
    return save_checkpoint(directory, manifest, onnx_path)


@functools.cache
def checkpoint() -> Checkpoint:
    info = require_encoder()
    return make_checkpoint(workdir() / "checkpoint", info.dim)


@functools.cache
def cpu_repository() -> Path:
    """The cpu flavour (int8 encoder, as the default pool routes with) of the random checkpoint."""
    from ladder.export.triton_repo import export_repository

    out = workdir() / "model_repository"
    export_repository(checkpoint().directory, out, flavour="cpu", int8=True, log=lambda _: None)
    return out


@functools.cache
def embedded_scorer() -> EmbeddedScorer:
    """The in-process reference: the same int8 encoder and head, on ONNX Runtime."""
    from ladder.core.encoder import OnnxEncoder
    from ladder.core.head import OnnxHead

    encoder = OnnxEncoder(encoder_dir(ENCODER), "int8")
    return EmbeddedScorer(encoder, OnnxHead(checkpoint().head_path), checkpoint().models)


def tokenizer() -> Tokenizer:
    return embedded_scorer().encoder.tokenizer


def server_or_skip(repository: Path, **kwargs: Any) -> TritonServer:
    """A started server, or skip when the binary is not installed (``scripts/install_triton.sh``)."""
    try:
        server = TritonServer(repository, **kwargs)
    except TritonNotInstalled as exc:
        pytest.skip(f"tritonserver cannot be used here: {exc}")
    return server.start()
