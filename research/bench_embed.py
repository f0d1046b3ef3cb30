"""Throughput of training-time embedding: in process vs a real tritonserver (cpu flavour); JSON on stdout.

Usage: ``python research/bench_embed.py [--prompts 64] [--in-flight 4] [--batch-rows 16] [--fp32]``.
Embeds the same real questions (MMLU-Pro from ../shared/data, else built-in prompts) both ways, checks
that the two agree, and extrapolates the cost of 1M prompts. The host's load average is part of the
output: on a shared machine the figures move with it. A GPU figure is NOT measured here; ``gpu_estimate``
says what it is based on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ladder.core.encoder import Tokenizer  # noqa: E402
from ladder.core.home import encoder_dir  # noqa: E402
from ladder.export.triton_repo import export_repository  # noqa: E402
from ladder.export.triton_server import TritonServer  # noqa: E402
from ladder.training.embed import InProcessEmbedder  # noqa: E402
from ladder.training.triton_embed import TritonEmbedder, TritonEmbedSettings  # noqa: E402

MILLION = 1_000_000
# Published basis of the GPU estimate (not measured here): MLPerf Inference BERT-99 (BERT-large: 24 layers,
# hidden 1024, 384 tokens) offline throughput on one H100 SXM, as NVIDIA reported it (order of 7-8k
# samples/s, TensorRT FP16/INT8). multilingual-e5-small is 12 layers at hidden 384: ~14x fewer multiply-adds
# per token (12 * 384^2 vs 24 * 1024^2 per layer stack), and a routed prompt is far shorter than 384 tokens.
GPU_BASIS_SAMPLES_PER_S = 7_500
GPU_BASIS_TOKENS = 384
FLOP_RATIO = (24 * 1024**2) / (12 * 384**2)
GPU_EFFICIENCY = 0.25  # small models do not fill an H100: assume a quarter of the FLOP-scaled ceiling


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def prompts(count: int) -> list[str]:
    """Real questions (MMLU-Pro), mixed lengths; falls back to built-in prompts without the shared data."""
    path = Path(os.environ.get("LADDER_SHARED_DATA", ROOT.parent / "shared" / "data")) / "mmlu_pro"
    texts: list[str] = []
    if (path / "questions.jsonl").is_file():
        with (path / "questions.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                texts.append(str(json.loads(line)["question"]))
                if len(texts) == count:
                    break
    base = ["東京から大阪まで新幹線で何時間かかりますか？", "请解释一下量子纠缠的基本原理。", "Sort a list?"]
    while len(texts) < count:
        texts.append(base[len(texts) % len(base)])
    return texts


def per_million(rate: float, machines: str) -> dict[str, object]:
    hours = MILLION / rate / 3600
    return {"prompts_per_s": round(rate, 2), "hours_per_1m": round(hours, 2), "machine": machines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--encoder", default="multilingual-e5-small")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "ladder" / "defaults" / "checkpoint")
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--batch-rows", type=int, default=16)
    parser.add_argument("--fp32", action="store_true", help="the fp32 encoder (default: int8, as training)")
    args = parser.parse_args(argv)
    variant = "fp32" if args.fp32 else "int8"
    texts = prompts(args.prompts)
    tokenizer = Tokenizer(encoder_dir(args.encoder))
    started = time.perf_counter()
    tokens = tokenizer.encode(texts * 20).lengths
    tokenise_rate = len(tokens) / (time.perf_counter() - started)
    report: dict[str, object] = {
        "cpu_count": os.cpu_count(),
        "load_average_start": load(),
        "prompts": len(texts),
        "mean_tokens": round(float(np.mean(tokens)), 1),
        "variant": variant,
        "client_tokenise_prompts_per_s": round(tokenise_rate, 1),
    }

    local = InProcessEmbedder(args.encoder, variant)
    local.embed(texts[:2])  # warm the session
    started = time.perf_counter()
    expected = local.embed(texts)
    report["in_process"] = per_million(len(texts) / (time.perf_counter() - started), "this host, all cores")

    with tempfile.TemporaryDirectory(prefix="ladder-bench-embed-") as scratch:
        repo = Path(scratch) / "model_repository"
        export_repository(args.checkpoint, repo, flavour="cpu", int8=not args.fp32, log=lambda _: None)
        with TritonServer(repo) as server:
            settings = TritonEmbedSettings(
                f"triton://{server.grpc_url}", batch_rows=args.batch_rows, in_flight=args.in_flight
            )
            with TritonEmbedder(settings, encoder_dir(args.encoder)) as embedder:
                embedder.embed(texts[:2])
                started = time.perf_counter()
                got = embedder.embed(texts)
                rate = len(texts) / (time.perf_counter() - started)
    report["triton_cpu"] = {
        **per_million(rate, "this host, tritonserver cpu flavour (python backend + ONNX Runtime)"),
        "in_flight": args.in_flight,
        "batch_rows": args.batch_rows,
        "max_abs_diff_vs_in_process": float(np.abs(got - expected).max()),
    }
    mean_tokens = float(np.mean(tokens))
    ceiling = GPU_BASIS_SAMPLES_PER_S * FLOP_RATIO * (GPU_BASIS_TOKENS / max(mean_tokens, 1.0))
    gpu_side = ceiling * GPU_EFFICIENCY
    report["gpu_estimate"] = {
        **per_million(min(gpu_side, tokenise_rate), "one H100, gpu flavour (TensorRT FP16): ESTIMATE"),
        "gpu_side_prompts_per_s": round(gpu_side),
        "client_tokenise_cap_prompts_per_s": round(tokenise_rate),
        "basis": (
            f"not measured. MLPerf Inference BERT-99 offline ~{GPU_BASIS_SAMPLES_PER_S} samples/s per H100 "
            f"at {GPU_BASIS_TOKENS} tokens; e5-small needs {FLOP_RATIO:.1f}x fewer MACs per token; prompts "
            f"here are {GPU_BASIS_TOKENS / max(mean_tokens, 1.0):.1f}x shorter; {GPU_EFFICIENCY} assumed "
            "efficiency for a small model; capped by ladder's client-side tokenisation measured on this host"
        ),
    }
    report["load_average_end"] = load()
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
