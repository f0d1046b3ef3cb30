"""Benchmark the Triton ``router`` ensemble (perf_analyzer) beside the in-process scorer: JSON + markdown.

Usage: ``python scripts/perf_triton.py --checkpoint ladder/defaults/checkpoint --out docs/perf [--fp32]``
(``--seconds 8``; same as ``ladder bench triton``). Needs ``scripts/install_triton.sh`` and
``scripts/install_perf_analyzer.sh``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ladder.core.errors import LadderError
from ladder.export.triton_perf import run_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("ladder/defaults/checkpoint"))
    parser.add_argument("--out", type=Path, default=Path("docs/perf"))
    parser.add_argument("--fp32", action="store_true", help="the fp32 encoder instead of int8")
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement window per point")
    args = parser.parse_args(argv)
    try:
        run_benchmark(args.checkpoint, args.out, int8=not args.fp32, seconds=args.seconds)
    except LadderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
