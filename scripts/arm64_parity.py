"""Route fixed English, Japanese and Chinese prompts with `ladder route` in the amd64 and arm64 gateway images.

Builds what is missing (``scripts/build_images.sh``; arm64 runs under qemu-user-static), runs ``ladder route
--json`` for every prompt in one container (one process) per architecture and encoder variant, and writes the
decisions, every P(correct) and the largest difference between the architectures as JSON (default
docs/images/arm64-parity.json). The fp32 encoder comes from the image when it ships one (``ENCODER_FP32=1``),
else from ``--encoder DIR`` (a ``ladder setup`` build, mounted read-only). Exits 1 when a decision differs, or
when a P(correct) of a variant held to the tolerance (``--exact``, default int8 and fp32) differs by more than it.

    python scripts/arm64_parity.py [--out docs/images/arm64-parity.json] [--tolerance 1e-4] [--encoder DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARCHES = ("amd64", "arm64")
PROMPTS = (
    ("en", "How much protein should an adult eat per day?"),
    ("en", "Prove that the square root of two is irrational, then generalise the argument to any prime."),
    ("en", "def merge(a, b):\n    return sorted(a + b)  # make this linear time"),
    ("ja", "東京から大阪まで新幹線で何時間かかりますか？"),
    ("ja", "量子コンピュータが従来のコンピュータより速く解ける問題の例を挙げて説明してください。"),
    ("zh", "请解释一下量子纠缠的基本原理。"),
    ("zh", "一个数列的前两项是1和1，之后每一项都是前两项之和。求第30项，并说明你的方法。"),
)
# podman's default open-files limit (1M) is above what a process without CAP_SYS_RESOURCE may set
LIMITS = ["--ulimit", "nofile=8192:8192", "--ulimit", "nproc=4096:4096"]
# One container per architecture, one process: `ladder route --json` for each prompt (the CLI itself, invoked
# in-process, the router loaded once: imports and loading the encoder are slow under emulation), then the runtime.
SCRIPT = """
import json, platform, sys
import onnxruntime
from typer.testing import CliRunner
from ladder.cli.main import app
from ladder.core.router import Router
load = Router.from_pool.__func__
routers = {}
variant = sys.argv[1]
def with_variant(pool):
    return pool.model_copy(update={"routing": pool.routing.model_copy(update={"encoder_variant": variant})})
Router.from_pool = classmethod(
    lambda cls, pool, *a, **k: routers.get(0) or routers.setdefault(0, load(cls, with_variant(pool)))
)
runner = CliRunner()
for prompt in sys.argv[2:]:
    result = runner.invoke(app, ["route", "--json", prompt], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    print(result.stdout)
print(json.dumps({"machine": platform.machine(), "onnxruntime": onnxruntime.__version__}))
"""


def image(arch: str, tag: str) -> str:
    ref = f"localhost/ladder-gateway:{tag}-{arch}"
    if subprocess.run(["podman", "image", "exists", ref], check=False).returncode != 0:
        env = {**os.environ, "ARCHES": arch, "IMAGES": "gateway"}
        subprocess.run(["bash", str(ROOT / "scripts/build_images.sh")], env=env, check=True)
    return ref


IMAGE_ENCODER = "/opt/ladder/encoders/multilingual-e5-small"


def ships_fp32(ref: str, arch: str) -> bool:
    cmd = ["podman", "--runtime", "runc", "run", "--rm", *LIMITS, "--arch", arch, "--network", "none",
           "--entrypoint", "test", ref, "-f", f"{IMAGE_ENCODER}/encoder.onnx"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def encoder_info(ref: str, arch: str, encoder: Path | None, kernels: str, folder: Path) -> Path:
    """The encoder's encoder.json (the mounted build's, else the image's) with ``int8_kernels`` set, to mount."""
    if encoder is not None:
        text = (encoder / "encoder.json").read_text(encoding="utf-8")
    else:
        cmd = ["podman", "--runtime", "runc", "run", "--rm", *LIMITS, "--arch", arch, "--network", "none",
               "--entrypoint", "cat", ref, f"{IMAGE_ENCODER}/encoder.json"]  # fmt: skip
        text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    path = folder / f"{arch}-{'mounted' if encoder else 'image'}-encoder.json"
    path.write_text(json.dumps({**json.loads(text), "int8_kernels": kernels}, indent=2) + "\n", encoding="utf-8")
    return path


def route_all(
    ref: str, arch: str, variant: str, encoder: Path | None, source: bool, info: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """Every prompt's decision (as `ladder route --json` prints it), the runtime, and the seconds it took."""
    start = time.monotonic()
    mount = ["-v", f"{encoder}:{IMAGE_ENCODER}:ro"] if encoder is not None else []
    mount += ["-v", f"{info}:{IMAGE_ENCODER}/encoder.json:ro"]
    if source:  # this checkout's package ahead of the one the image was built with
        mount += ["-v", f"{ROOT / 'ladder'}:/run/ladder-source/ladder:ro", "-e", "PYTHONPATH=/run/ladder-source"]
    cmd = ["podman", "--runtime", "runc", "run", "--rm", *LIMITS, "--arch", arch, "--read-only", "--network", "none",
           *mount, "--entrypoint", "python3", ref, "-c", SCRIPT, variant, *(text for _, text in PROMPTS)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"ladder route failed in {ref}:\n{result.stderr[-4000:]}")
    decoder, text, pos, docs = json.JSONDecoder(), result.stdout, 0, []
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
    return docs[:-1], docs[-1], time.monotonic() - start


def compare(runs: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    """Per prompt: each architecture's decision and P(correct), and the largest difference between them."""
    rows, largest = [], 0.0
    for i, (language, text) in enumerate(PROMPTS):
        one = {arch: runs[arch]["decisions"][i] for arch in ARCHES}
        p = {arch: {c["name"]: c["p_correct"] for c in one[arch]["candidates"]} for arch in ARCHES}
        diff = max(abs(p["amd64"][name] - p["arm64"][name]) for name in p["amd64"])
        largest = max(largest, diff)
        rows.append({
            "language": language, "prompt": text,
            "model": {arch: one[arch]["model"] for arch in ARCHES},
            "same_decision": one["amd64"]["model"] == one["arm64"]["model"],
            "max_abs_p_correct_diff": diff,
            "p_correct": p,
        })  # fmt: skip
    return rows, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/arm64-parity.json")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--variants", default="int8,fp32", help="encoder variants to compare")
    parser.add_argument("--exact", default="int8,fp32", help="variants whose P(correct) must agree within --tolerance")
    parser.add_argument("--encoder", type=Path, help="an encoder build with encoder.onnx, for images without one")
    parser.add_argument("--source", action="store_true", help="run this checkout's ladder package in the images")
    parser.add_argument("--int8-kernels", default="same_bits", choices=["same_bits", "fast"],
                        help="the encoder folder's int8_kernels (same_bits: the same bits on every CPU)")  # fmt: skip
    args = parser.parse_args()
    tag = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    variants, exact = args.variants.split(","), set(args.exact.split(","))

    refs = {arch: image(arch, tag) for arch in ARCHES}
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    report: dict[str, Any] = {"tolerance": args.tolerance, "held_to_tolerance": sorted(exact), "commit": commit,
                              "int8_kernels": args.int8_kernels, "variants": {}}  # fmt: skip
    infos = Path(tempfile.mkdtemp(prefix="ladder-parity-"))
    failed = False
    for variant in variants:
        runs: dict[str, Any] = {}
        for arch, ref in refs.items():
            encoder = None
            if variant == "fp32" and not ships_fp32(ref, arch):
                if args.encoder is None:
                    sys.exit(f"{ref} ships no fp32 encoder: build it with ENCODER_FP32=1 or pass --encoder DIR")
                encoder = args.encoder.resolve()
            digest = subprocess.run(["podman", "image", "inspect", "--format", "{{.Digest}}", ref],
                                    capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
            info = encoder_info(ref, arch, encoder, args.int8_kernels, infos)
            decisions, runtime, seconds = route_all(ref, arch, variant, encoder, args.source, info)
            runs[arch] = {"image": ref, "digest": digest, "runtime": runtime, "seconds": round(seconds, 1),
                          "encoder": "image" if encoder is None else "mounted --encoder",
                          "ladder_package": "this checkout (--source)" if args.source else "the image's",
                          "decisions": decisions}  # fmt: skip
            print(f"{arch} {variant}: {len(decisions)} prompts routed in {seconds:.1f} s on {runtime}", file=sys.stderr)
        rows, largest = compare(runs)
        equal = all(r["same_decision"] for r in rows)
        within = largest <= args.tolerance
        failed |= not equal or (variant in exact and not within)
        report["variants"][variant] = {
            "largest_p_correct_diff": largest,
            "all_decisions_equal": equal,
            "within_tolerance": within,
            "runs": {arch: {k: v for k, v in run.items() if k != "decisions"} for arch, run in runs.items()},
            "prompts": rows,
        }
        print(f"{variant}: largest P(correct) difference {largest:.2e}; decisions equal: {equal}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
