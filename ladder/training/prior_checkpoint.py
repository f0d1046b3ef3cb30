"""A router checkpoint with chosen priors: a random head over the real encoder's embeddings, set biases."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ladder.core.checkpoint import Checkpoint, EncoderIdentity, Manifest, TrainingRecord, save_checkpoint
from ladder.core.encoder import EncoderInfo
from ladder.core.home import encoder_dir
from ladder.training.head_model import MLP, RouterHead, export_head

REDUCED_DIMS = 8


def make_checkpoint(
    directory: Path,
    labels: Sequence[str],
    biases: Sequence[float],
    encoder: str = "multilingual-e5-small",
    seed: int = 0,
) -> Checkpoint:
    """Write a checkpoint whose P(correct) for model i is about sigmoid(biases[i]), nudged by the prompt."""
    info = EncoderInfo.load(encoder_dir(encoder))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    member = MLP(REDUCED_DIMS, 16, len(labels), 0.0)
    with torch.no_grad():
        for parameter in member.parameters():
            parameter.mul_(0.1)
    head = RouterHead(
        mean=np.zeros(info.dim, dtype=np.float32),
        components=rng.normal(0, 1 / np.sqrt(info.dim), (info.dim, REDUCED_DIMS)).astype(np.float32),
        members=[member],
        scale=np.ones(len(labels), dtype=np.float32),
        bias=np.asarray(biases, dtype=np.float32),
    )
    manifest = Manifest(
        models=list(labels),
        encoder=EncoderIdentity(name=info.name, dim=info.dim, source=info.source, variant="int8"),
        head_sha256="",
        training=TrainingRecord(
            data_files=[],
            data_digest="test",
            questions=0,
            seed=seed,
            created_at=datetime.now(UTC).isoformat(),
        ),
    )
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / "head.onnx"
        export_head(head, onnx_path)
        return save_checkpoint(directory, manifest, onnx_path)
