"""The router checkpoint: a versioned folder of JSON and ONNX, loadable without unpickling anything."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ladder.core.errors import CheckpointError

FORMAT: Literal["ladder-checkpoint"] = "ladder-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
HEAD_FILE = "head.onnx"
OOF_FILE = "oof.npz"  # the training rows' ids and out-of-fold P(correct), so `evaluate` never refits


class EncoderIdentity(BaseModel):
    """Which encoder produced the embeddings the head was trained on."""

    model_config = ConfigDict(extra="forbid")
    name: str
    dim: int
    source: str = ""
    variant: str = "int8"


class TrainingRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data_files: list[str]
    data_digest: str
    questions: int
    seed: int
    created_at: str
    settings: dict[str, Any] = Field(default_factory=dict)


class Recommendation(BaseModel):
    """The operating point chosen by cross-validation on the training data."""

    model_config = ConfigDict(extra="forbid")
    tolerance: float
    cv_accuracy: float
    cv_cost_per_1k: float
    rule: str


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["ladder-checkpoint"] = FORMAT
    version: int = VERSION
    models: list[str]
    encoder: EncoderIdentity
    head_sha256: str
    expected_output_tokens: dict[str, float] = Field(default_factory=dict)
    data_cost_per_request: dict[str, float] = Field(default_factory=dict)
    training: TrainingRecord
    cv_metrics: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="Out-of-fold metrics per model; an AUC is None when one class only"
    )
    recommended: Recommendation | None = None
    reference_p_correct: list[list[float]] = Field(
        default_factory=list, description="held-out P(correct) rows, for the budget policy"
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Checkpoint:
    """A loaded checkpoint: its manifest and the path of its ONNX head."""

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        self.directory = directory
        self.manifest = manifest

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.manifest.models)

    @property
    def head_path(self) -> Path:
        return self.directory / HEAD_FILE

    @property
    def oof_path(self) -> Path:
        return self.directory / OOF_FILE

    @property
    def reference_p(self) -> np.ndarray:
        return np.asarray(self.manifest.reference_p_correct, dtype=np.float32).reshape(-1, len(self.models))

    @classmethod
    def load(cls, directory: Path | str, verify: bool = True) -> Checkpoint:
        directory = Path(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise CheckpointError(f"{directory}: not a Ladder checkpoint (no {MANIFEST})")
        try:
            raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{manifest_path}: not valid JSON ({exc})") from exc
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise CheckpointError(f"{manifest_path}: not a Ladder checkpoint manifest")
        if raw.get("version") != VERSION:
            raise CheckpointError(
                f"{manifest_path}: checkpoint format version {raw.get('version')} is not supported "
                f"(this Ladder reads version {VERSION}); retrain or upgrade Ladder"
            )
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            raise CheckpointError(f"{manifest_path}: invalid manifest: {exc}") from exc
        head = directory / HEAD_FILE
        if not head.is_file():
            raise CheckpointError(f"{directory}: {HEAD_FILE} is missing")
        if verify and sha256_file(head) != manifest.head_sha256:
            raise CheckpointError(f"{head}: checksum does not match the manifest (corrupt or replaced)")
        return cls(directory, manifest)

    def require_models(self, labels: Sequence[str], pool_name: str = "the pool") -> None:
        """Fail clearly when a pool asks for models this checkpoint cannot score."""
        missing = [label for label in labels if label not in self.manifest.models]
        if missing:
            raise CheckpointError(
                f"checkpoint {self.directory} was trained for {self.manifest.models}; {pool_name} also has "
                f"{missing}, which it cannot score. Retrain with `ladder train` on data covering them, or set"
                " "
                f"`label:` on those pool entries to the checkpoint model they should be scored as."
            )


def save_checkpoint(
    directory: Path, manifest: Manifest, head_onnx: Path, oof: tuple[Sequence[str], np.ndarray] | None = None
) -> Checkpoint:
    """Write a checkpoint atomically: a half-written folder never replaces a good one.

    ``oof``: the training rows' question ids and their out-of-fold P(correct) [rows, manifest models].
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        shutil.copyfile(head_onnx, staging / HEAD_FILE)
        manifest = manifest.model_copy(update={"head_sha256": sha256_file(staging / HEAD_FILE)})
        (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        if oof is not None:
            ids, p = oof
            if p.shape != (len(ids), len(manifest.models)):
                raise CheckpointError(f"out-of-fold scores of shape {p.shape} for {len(ids)} rows")
            np.savez(staging / OOF_FILE, question_ids=np.asarray(list(ids), dtype=str), p=p.astype(np.float32))
        if directory.exists():
            backup = directory.with_name(f".{directory.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(directory, backup)
            os.replace(staging, directory)
            shutil.rmtree(backup)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Checkpoint.load(directory)
