"""Export a router (checkpoint + encoder) into a Triton model repository, with a parity check.

Models written: ``tokenizer`` (python backend), ``encoder``, ``head``, and the ensembles ``router`` (ids →
``p_correct``) and ``router_text`` (raw text → ``p_correct``). The ``cpu`` flavour serves the ONNX files
through python-backend models running ONNX Runtime (what pytriton's server can load); the ``gpu`` flavour uses
the ``onnxruntime`` backend with the TensorRT accelerator, or a ``tensorrt_plan`` engine built by ``trtexec``.
Every export runs the repository's own files offline and compares them with the embedded scorer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ladder.core.checkpoint import Checkpoint
from ladder.core.encoder import TOKENIZER_FILE, EncoderInfo, OnnxEncoder, Tokenizer, Variant, session_graph
from ladder.core.errors import CheckpointError, ConfigError, LadderError
from ladder.core.head import OnnxHead
from ladder.core.home import encoder_dir
from ladder.core.scoring import EmbeddedScorer
from ladder.export import triton_configs as cfg
from ladder.export.triton_models import onnx_model, tokenizer_model
from ladder.export.triton_models.onnx_model import OnnxRunner
from ladder.export.triton_models.tokenizer_model import TextTokenizer

MODELS = ("tokenizer", "encoder", "head", "router", "router_text")
LABELS_FILE = "labels.txt"
# Max |P(correct) from the repository's files - the embedded scorer's| over the parity prompts. The cpu
# flavour serves the very same ONNX files, so anything above float noise is a bug; the gpu flavour serves a
# portable (unfused, standard-op) re-export of the encoder, compared with the embedded fp32 encoder.
PARITY_TOLERANCE: dict[cfg.Flavour, float] = {"cpu": 1e-5, "gpu": 1e-4}
PARITY_TEXTS = (
    "How much protein should an adult eat per day?",
    "東京から大阪まで新幹線で何時間かかりますか？",
    "请解释一下量子纠缠的基本原理。",
    "def merge(a, b):\n    return sorted(a + b)  # make this linear time",
    "ok",
    "Prove that there are infinitely many primes. " * 80,  # past 512 tokens: the end is kept
)

Log = Callable[[str], None]


class ExportError(LadderError):
    """An export failed a check (parity, missing tool); the repository was left as it was."""


@dataclass
class ExportResult:
    """What an export wrote and how closely the repository matches the embedded scorer."""

    out: Path
    flavour: cfg.Flavour
    variant: Variant
    labels: tuple[str, ...]
    parity_max_diff: float
    tolerance: float
    models: list[str] = field(default_factory=lambda: list(MODELS))


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (large ONNX files), copying when linking is impossible."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def trtexec_command(onnx_path: Path, plan_path: Path, max_batch: int, max_tokens: int) -> list[str]:
    """The documented TensorRT engine build (run on the target GPU: plans are not portable)."""
    shapes = {"min": "1x1", "opt": f"16x{max_tokens // 4}", "max": f"{max_batch}x{max_tokens}"}
    return [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={plan_path}",
        "--fp16",
        *(f"--{k}Shapes=input_ids:{v},attention_mask:{v}" for k, v in shapes.items()),
    ]


def _portable_encoder(directory: Path, info: EncoderInfo, dst: Path) -> None:
    """Re-export the encoder with standard ONNX ops only (TensorRT cannot parse ORT's fused contrib ops)."""
    import torch

    from ladder.export.encoder_build import load_backbone
    from ladder.export.onnx_export import export_onnx
    from ladder.export.pooling import PooledEncoder

    hf_dir = directory / "hf"
    if not (hf_dir / "config.json").is_file():
        raise ExportError(
            f"{directory}: the gpu flavour needs the Hugging Face folder hf/ (rebuild with --force)"
        )
    unreadable = sorted(str(path) for path in hf_dir.iterdir() if path.is_file() and not os.access(path, os.R_OK))
    if unreadable:
        raise ExportError(
            f"{', '.join(unreadable)}: not readable by this user (uid {os.getuid()}); make the encoder folder "
            f"readable (`chmod -R a+rX {directory}`) or rebuild it with `ladder setup --force`"
        )
    module = PooledEncoder(load_backbone(hf_dir), pooling=info.pooling, normalize=info.normalize)
    sample = Tokenizer(directory, info=info).encode(["an example", "a somewhat longer example text"])
    inputs = {
        "input_ids": torch.from_numpy(sample.input_ids),
        "attention_mask": torch.from_numpy(sample.attention_mask),
    }
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    export_onnx(module, inputs, dst, ["embedding"], {**axes, "embedding": {0: "batch"}})


def _cpu_encoder(source: Path, variant: Variant, info: EncoderInfo, dst: Path) -> None:
    """The cpu flavour's encoder graph: the folder's file as built, or, for an int8 graph whose folder asks for
    ``int8_kernels: same_bits``, that graph rewritten as the embedded scorer runs it (the same bits on every
    CPU, and the same P(correct) as in process)."""
    graph = session_graph(source, variant, same_bits_int8=info.int8_kernels == "same_bits")
    if isinstance(graph, bytes):
        dst.write_bytes(graph)
    else:
        link_or_copy(source, dst)


def _warmup_files(folder: Path, tokenizer: Tokenizer, flavour: cfg.Flavour) -> None:
    """Raw int64 warm-up inputs of the lengths the encoder config names."""
    row = tokenizer.encode(["warm up the router " * 200]).input_ids[0]
    folder.mkdir(parents=True, exist_ok=True)
    for tokens in cfg.WARMUP_TOKENS[flavour]:
        ids = np.concatenate([row[: tokens - 1], row[-1:]]).astype("<i8")
        (folder / cfg.warmup_file("input_ids", tokens)).write_bytes(ids.tobytes())
        (folder / cfg.warmup_file("attention_mask", tokens)).write_bytes(np.ones(tokens, "<i8").tobytes())


def write_repository(
    stage: Path,
    ckpt: Checkpoint,
    directory: Path,
    info: EncoderInfo,
    shape: cfg.RepoShape,
    variant: Variant,
    tensorrt_plan: bool,
    log: Log,
    tensorrt: bool = True,
) -> None:
    """Write every model folder of the repository into ``stage`` (``tensorrt=False``: the gpu encoder on
    ONNX Runtime's CUDA provider, without the TensorRT accelerator)."""
    labels = "".join(f"{m}\n" for m in ckpt.models)
    tokenizer = Tokenizer(directory, info=info)
    # a per-tensor int8 graph runs each row alone (batch-invariant scores, as in the embedded scorer); fp32
    # and per-token int8 graphs batch
    identity = served_identity(info, shape.flavour, variant, tensorrt_plan, tensorrt=tensorrt)
    per_row = info.batching_moves_rows(variant)
    configs = cfg.repository_configs(
        shape, identity, per_row=per_row, tensorrt_plan=tensorrt_plan, tensorrt=tensorrt
    )
    for name, text in configs.items():
        _write(stage / name / "config.pbtxt", text)

    tok = stage / "tokenizer"
    shutil.copyfile(tokenizer_model.__file__, _mkdir(tok / "1") / "model.py")
    link_or_copy(directory / TOKENIZER_FILE, tok / "1" / TOKENIZER_FILE)
    config = {"prefix": info.prefix, "max_tokens": info.max_tokens, "pad_id": info.pad_id}
    _write(tok / "1" / tokenizer_model.CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False) + "\n")

    enc = stage / "encoder"
    _mkdir(enc / "1")
    if shape.flavour == "gpu":
        log("exporting a portable (standard-op) encoder graph for TensorRT")
        _portable_encoder(directory, info, enc / "1" / "model.onnx")
    else:
        _cpu_encoder(directory / getattr(info.files, variant), variant, info, enc / "1" / "model.onnx")
        shutil.copyfile(onnx_model.__file__, enc / "1" / "model.py")
    _warmup_files(enc / "warmup", tokenizer, shape.flavour)
    if tensorrt_plan:
        _build_plan(enc, shape, log)

    head = stage / "head"
    link_or_copy(ckpt.head_path, _mkdir(head / "1") / "model.onnx")
    if shape.flavour == "cpu":
        shutil.copyfile(onnx_model.__file__, head / "1" / "model.py")
    for folder in (head, stage / "router", stage / "router_text"):
        _write(folder / LABELS_FILE, labels)
    for name in ("router", "router_text"):
        _write(stage / name / "1" / ".gitkeep", "")  # an ensemble still needs its (empty) version folder


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def served_identity(
    info: EncoderInfo,
    flavour: cfg.Flavour,
    variant: Variant,
    tensorrt_plan: bool = False,
    *,
    tensorrt: bool = True,
) -> dict[str, str]:
    """The encoder identity written into ``encoder/config.pbtxt`` (the gpu flavour's graph is fp32, run in
    TensorRT FP16), so that ``ladder train --embed-with`` can refuse a repository serving another encoder."""
    engine = "onnxruntime-cpu" if flavour == "cpu" else "tensorrt-fp16"
    engine = engine.replace("tensorrt", "tensorrt-plan") if tensorrt_plan else engine
    engine = "onnxruntime-cuda" if flavour == "gpu" and not tensorrt and not tensorrt_plan else engine
    kernels = info.int8_kernels if variant == "int8" else None
    return cfg.encoder_identity(info.name, info.source, info.dim, variant, engine, kernels)


def _build_plan(enc: Path, shape: cfg.RepoShape, log: Log) -> None:
    command = trtexec_command(
        enc / "1" / "model.onnx", enc / "1" / "model.plan", shape.max_batch, shape.max_tokens
    )
    if shutil.which("trtexec") is None:
        raise ExportError(
            "--tensorrt-plan needs TensorRT's trtexec on PATH (run on the target GPU, e.g. in the Triton "
            f"container): {' '.join(command)}"
        )
    log(f"building the TensorRT engine: {' '.join(command)}")
    subprocess.run(command, check=True)
    (enc / "1" / "model.onnx").unlink()


def check_parity(stage: Path, reference: EmbeddedScorer, tokenizer: Tokenizer, tolerance: float) -> float:
    """Run the repository's tokenizer, encoder and head files offline; max |P - embedded P| or raise."""
    text_tok = TextTokenizer.from_dir(stage / "tokenizer" / "1")
    encoder = OnnxRunner(
        stage / "encoder" / "1" / "model.onnx", ["input_ids", "attention_mask"], ["embedding"]
    )
    head = OnnxRunner(stage / "head" / "1" / "model.onnx", ["embedding"], ["p_correct"], threads=1)
    worst = 0.0
    for text in PARITY_TEXTS:
        expected = tokenizer.encode([text])
        ids, mask = text_tok.encode([text])
        if not (np.array_equal(ids, expected.input_ids) and np.array_equal(mask, expected.attention_mask)):
            raise ExportError(f"the tokenizer step disagrees with ladder's Tokenizer on {text[:40]!r}")
        embedding = encoder.run([{"input_ids": ids, "attention_mask": mask}])[0]["embedding"]
        p = head.run([{"embedding": embedding}])[0]["p_correct"]
        worst = max(worst, float(np.abs(p - reference.score_ids(ids, mask)).max()))
    if not worst <= tolerance:
        raise ExportError(
            f"parity check failed: the repository's P(correct) differs from the embedded "
            f"scorer's by {worst:.2e} (tolerance {tolerance:g})"
        )
    return worst


def _install(stage: Path, out: Path) -> None:
    """Replace each model folder of ``out`` by the staged one; other files (README, .gitignore) stay."""
    out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        target = out / name
        old = out / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        (stage / name).rename(target)
        shutil.rmtree(old, ignore_errors=True)


def export_repository(
    checkpoint: Path,
    out: Path,
    *,
    encoder: str | None = None,
    flavour: cfg.Flavour = "cpu",
    int8: bool = False,
    max_batch: int = cfg.MAX_BATCH,
    queue_delay_us: int | None = None,
    tensorrt_plan: bool = False,
    log: Log = print,
    tensorrt: bool = True,
) -> ExportResult:
    """Export ``checkpoint`` with its encoder into the Triton repository ``out`` (checked before install)."""
    if flavour not in ("cpu", "gpu"):
        raise ConfigError(f"flavour must be 'cpu' or 'gpu', not {flavour!r}")
    if flavour == "gpu" and int8:
        raise ConfigError(
            "--int8 is a CPU optimisation (dynamic int8 MatMul); the gpu flavour runs TensorRT FP16"
        )
    if tensorrt_plan and flavour != "gpu":
        raise ConfigError("--tensorrt-plan needs --flavour gpu")
    ckpt = Checkpoint.load(checkpoint)
    directory = encoder_dir(encoder or ckpt.manifest.encoder.name)
    info = EncoderInfo.load(directory)
    if (info.name, info.dim) != (ckpt.manifest.encoder.name, ckpt.manifest.encoder.dim):
        raise CheckpointError(
            f"checkpoint {ckpt.directory} was trained on {ckpt.manifest.encoder.name} "
            f"({ckpt.manifest.encoder.dim}-d), not {info.name} ({info.dim}-d)"
        )
    variant: Variant = "int8" if int8 else "fp32"
    shape = cfg.RepoShape(flavour, info.dim, len(ckpt.models), info.max_tokens, max_batch, queue_delay_us)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        write_repository(stage, ckpt, directory, info, shape, variant, tensorrt_plan, log, tensorrt)
        reference = EmbeddedScorer(
            OnnxEncoder(directory, variant, info=info), OnnxHead(ckpt.head_path), ckpt.models
        )
        tolerance = PARITY_TOLERANCE[flavour]
        if tensorrt_plan:
            worst = 0.0  # the engine only runs on the GPU it was built on; checked there by Triton's warm-up
        else:
            worst = check_parity(stage, reference, Tokenizer(directory, info=info), tolerance)
            log(f"parity: max |P(correct) repository - embedded| = {worst:.2e} (tolerance {tolerance:g})")
        _install(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log(f"wrote {flavour} repository ({variant} encoder, {len(ckpt.models)} models) to {out}")
    return ExportResult(out, flavour, variant, ckpt.models, worst, tolerance)
