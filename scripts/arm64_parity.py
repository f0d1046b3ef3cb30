"""Route fixed English, Japanese and Chinese prompts with `ladder route` in the amd64 and arm64 gateway images.

Builds what is missing (``scripts/build_images.sh``; arm64 runs under qemu-user-static), runs ``ladder route
--json`` for every prompt in one container (one process) per architecture, and writes the decisions, every
P(correct) and the largest difference between the architectures as JSON (default
docs/images/arm64-parity.json). Exits 1 when a decision differs or a P(correct) differs by more than the
tolerance.

    python scripts/arm64_parity.py [--out docs/images/arm64-parity.json] [--tolerance 1e-4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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
Router.from_pool = classmethod(lambda cls, pool, *a, **k: routers.get(0) or routers.setdefault(0, load(cls, pool)))
runner = CliRunner()
for prompt in sys.argv[1:]:
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


def route_all(ref: str, arch: str) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """Every prompt's decision (as `ladder route --json` prints it), the runtime, and the seconds it took."""
    start = time.monotonic()
    cmd = ["podman", "--runtime", "runc", "run", "--rm", *LIMITS, "--arch", arch, "--read-only", "--network", "none",
           "--entrypoint", "python3", ref, "-c", SCRIPT, *(text for _, text in PROMPTS)]  # fmt: skip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/arm64-parity.json")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    tag = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

    runs: dict[str, Any] = {}
    for arch in ARCHES:
        ref = image(arch, tag)
        digest = subprocess.run(["podman", "image", "inspect", "--format", "{{.Digest}}", ref],
                                capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        decisions, runtime, seconds = route_all(ref, arch)
        runs[arch] = {"image": ref, "digest": digest, "runtime": runtime, "seconds": round(seconds, 1),
                      "decisions": decisions}  # fmt: skip
        print(f"{arch}: {len(decisions)} prompts routed in {seconds:.1f} s on {runtime}", file=sys.stderr)

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
    report = {
        "tolerance": args.tolerance,
        "largest_p_correct_diff": largest,
        "all_decisions_equal": all(r["same_decision"] for r in rows),
        "within_tolerance": largest <= args.tolerance,
        "runs": {arch: {k: v for k, v in run.items() if k != "decisions"} for arch, run in runs.items()},
        "prompts": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"largest P(correct) difference {largest:.2e}; decisions equal: {report['all_decisions_equal']}")
    if not (report["all_decisions_equal"] and report["within_tolerance"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
