"""Measure `ladder calibrate`: choose a tolerance on one part of the held-out rows, check it on the rest.

    .venv/bin/python research/calibrate_check.py --data runs/mmlu_pro.csv.gz \
        --targets priciest-share=0.3,cost-per-1k=0.3 --json reports/calibrate/check.json

The held-out (test) rows that every pool model answered, and whose text is not in the training split, are
scored once with the checkpoint. They are then halved at random, many times: the tolerance is calibrated on
one half and what it gives is measured on the other. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ladder.core.checkpoint import Checkpoint
from ladder.core.head import OnnxHead
from ladder.core.pool import load_pool
from ladder.training.calibrate import Target, TargetKind, calibrate, held_out_check
from ladder.training.costs import cost_matrix
from ladder.training.dataset import read_canonical
from ladder.training.embed import embed_texts
from ladder.training.evaluate import EvaluationInputs


def _rows(inputs: EvaluationInputs, rows: np.ndarray) -> EvaluationInputs:
    return EvaluationInputs(
        names=inputs.names,
        labels=inputs.labels[rows],
        costs=inputs.costs[rows],
        router_p=inputs.router_p[rows],
        knn_p=None,
        questions=len(rows),
        dropped_incomplete=0,
        overlap_with_training=None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--pool", type=Path, default=Path("pools/default.yaml"))
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/default"))
    parser.add_argument("--every", type=int, default=1, help="use every K-th question (a faster run)")
    parser.add_argument("--targets", default="priciest-share=0.3,cost-per-1k=0.3")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    pool = load_pool(args.pool)
    checkpoint = Checkpoint.load(args.checkpoint)
    names, labels = list(pool.names), [m.checkpoint_label for m in pool.models]
    data = read_canonical([args.data])
    data = data.subset(np.arange(0, len(data), args.every))
    enc = checkpoint.manifest.encoder
    seen = set(data.split("train").questions)
    test = data.split("test")
    y = test.labels[:, [test.models.index(label) for label in labels]]
    keep = ~np.isnan(y).any(axis=1) & np.array([q not in seen for q in test.questions])
    test, y = test.subset(np.nonzero(keep)[0]), y[keep]
    x = embed_texts(
        test.questions, enc.name, enc.variant, 512, lambda s, d, t: print(f"{s} {d}/{t}", file=sys.stderr)
    )
    p = OnnxHead(checkpoint.head_path).predict(x)[:, [checkpoint.models.index(label) for label in labels]]
    scored = EvaluationInputs(
        names=names,
        labels=y,
        costs=cost_matrix(test, names, pool, labels),
        router_p=p,
        knn_p=None,
        questions=len(y),
        dropped_incomplete=0,
        overlap_with_training=None,
    )
    result: dict[str, Any] = {"checkpoint": str(args.checkpoint), "held_out_questions": len(y), "targets": []}
    for text in args.targets.split(","):
        target = Target.parse(text)
        runs = []
        for seed in range(args.repeats):
            order = np.random.default_rng(seed).permutation(len(y))
            half = len(y) // 2
            chosen = calibrate(_rows(scored, order[:half]), target)
            other = held_out_check(
                _rows(scored, order[half:]), chosen["tolerance"], chosen["on_sample"]["priciest_model"]
            )
            runs.append(
                {
                    "tolerance": chosen["tolerance"],
                    "sample_share": chosen["on_sample"]["priciest_share"],
                    "sample_cost_per_1k": chosen["on_sample"]["cost_per_1k"],
                    "held_out_share": other["priciest_share"],
                    "held_out_cost_per_1k": other["cost_per_1k"],
                    "held_out_accuracy": other["accuracy"],
                    "held_out_relative_accuracy": other["relative_accuracy"],
                }
            )
        key, band = {
            TargetKind.PRICIEST_SHARE: ("held_out_share", 0.03),
            TargetKind.COST_PER_1K: ("held_out_cost_per_1k", 0.1 * target.value),
            TargetKind.RELATIVE_ACCURACY: ("held_out_relative_accuracy", 0.01),
        }[target.kind]
        values = np.array([r[key] for r in runs])
        inside = np.abs(values - target.value) <= band + 1e-12
        result["targets"].append(
            {
                "target": text,
                "calibration_rows": len(y) // 2,
                "check_rows": len(y) - len(y) // 2,
                "held_out_mean": float(values.mean()),
                "held_out_min": float(values.min()),
                "held_out_max": float(values.max()),
                "share_of_repeats_in_band": float(inside.mean()),
                "measure": key,
                "band": f"target +/- {band:g}",
                "runs": runs,
            }
        )
    text_out = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text_out + "\n", encoding="utf-8")
    print(text_out)
    print(
        "; ".join(
            f"{t['target']}: held-out {t['held_out_mean']:.3f} "
            f"[{t['held_out_min']:.3f}, {t['held_out_max']:.3f}]"
            for t in result["targets"]
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
