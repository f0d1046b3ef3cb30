"""Measure `ladder onboard`: hold one pool model out of training, add it back from N labels, print JSON.

    .venv/bin/python research/onboard_curve.py --data runs/mmlu_pro.csv.gz --hold-out llama-3.1-70b \
        --json reports/onboard/curve.json --plot reports/onboard/curve.png

The data needs a train/test split (`ladder import ... --test-fraction 0.2`). The fully retrained router is
`--full` (default: one trained here on the same rows for the whole pool). A base router is
trained without the held-out model (once; reused from --work). The held-out model is then onboarded from
N labels drawn from the training split, at random or as `ladder onboard --suggest` picks them, for several
seeds, and judged on the test split: its AUC, and the router's arena score with it, beside full retraining.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ladder.core.checkpoint import Checkpoint
from ladder.core.head import OnnxHead
from ladder.core.pool import load_pool
from ladder.training.costs import cost_matrix
from ladder.training.dataset import read_canonical
from ladder.training.embed import embed_texts
from ladder.training.fit import HeadSettings
from ladder.training.metrics import auc, sweep
from ladder.training.onboard import honest_base_p
from ladder.training.onboard_fit import OnboardSettings, fit_new_model
from ladder.training.probes import suggest
from ladder.training.train import TrainingSpec, train


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _router_figures(p: np.ndarray, y: np.ndarray, c: np.ndarray, tolerance: float) -> dict[str, float]:
    points = sweep(p, y, c)
    at = min(points, key=lambda pt: abs(pt.tolerance - tolerance))
    return {
        "accuracy_at_0": points[0].accuracy,
        "cost_per_1k_at_0": points[0].cost_per_1k,
        "arena_at_pool_tolerance": at.arena_score,
        "accuracy_at_pool_tolerance": at.accuracy,
        "cost_per_1k_at_pool_tolerance": at.cost_per_1k,
        "arena_best": max(pt.arena_score for pt in points),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--pool", type=Path, default=Path("pools/default.yaml"))
    parser.add_argument(
        "--full", type=Path, help="fully retrained checkpoint on the same split (default: train one)"
    )
    parser.add_argument("--every", type=int, default=1, help="use every K-th question (a faster run)")
    parser.add_argument("--hold-out", default="llama-3.1-70b", help="pool model name to hold out")
    parser.add_argument("--work", type=Path, default=Path("runs/onboard"))
    parser.add_argument("--sizes", default="50,100,200,400")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pca-dims", default="0,8", help="feature variants to compare")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()

    pool = load_pool(args.pool)
    names = list(pool.names)
    labels_of = {m.name: m.checkpoint_label for m in pool.models}
    held = args.hold_out
    held_label = labels_of[held]
    rest = [n for n in names if n != held]
    data = read_canonical([args.data])
    data = data.subset(np.arange(0, len(data), args.every))
    spec = TrainingSpec(head=HeadSettings(pca_dims=128, seed=0))
    _log(f"embedding {len(data.questions)} questions (cached after the first run)")
    x_all = embed_texts(
        data.questions, spec.encoder, spec.variant, spec.max_tokens, lambda s, d, t: _log(f"{s}: {d}/{t}")
    )
    row_of = {q: i for i, q in enumerate(data.questions)}

    def lookup(texts: list[str]) -> np.ndarray:
        return x_all[[row_of[t] for t in texts]]

    work = args.work / f"every-{args.every}"
    base_dir = work / f"base-without-{held}"
    if not (base_dir / "manifest.json").is_file():
        _log(f"training the base router without {held}")
        reduced = pool.model_copy(update={"models": tuple(m for m in pool.models if m.name != held)})
        train(data, [str(args.data)], base_dir, reduced, spec, embed=lookup)
    full_dir = args.full or work / "full"
    if not (full_dir / "manifest.json").is_file():
        _log("training the full router (every pool model)")
        train(data, [str(args.data)], full_dir, pool, spec, embed=lookup)
    base = Checkpoint.load(base_dir)
    full = Checkpoint.load(full_dir)

    train_rows = data.split("train")
    test_rows = data.split("test")
    all_labels = [labels_of[n] for n in names]
    y_test = test_rows.labels[:, [test_rows.models.index(label) for label in all_labels]]
    seen = set(train_rows.questions)
    keep = ~np.isnan(y_test).any(axis=1) & np.array([q not in seen for q in test_rows.questions])
    test_rows, y_test = test_rows.subset(np.nonzero(keep)[0]), y_test[keep]
    x_test = lookup(test_rows.questions)
    c_test = cost_matrix(test_rows, names, pool, all_labels)
    full_p = OnnxHead(full.head_path).predict(x_test)[:, [full.models.index(label) for label in all_labels]]
    base_cols = [base.models.index(labels_of[n]) for n in rest]
    base_p_test = OnnxHead(base.head_path).predict(x_test)[:, base_cols]
    j = names.index(held)
    tolerance = pool.routing.tolerance

    def assemble(new_column: np.ndarray) -> np.ndarray:
        return np.insert(base_p_test, j, new_column, axis=1)

    rest_idx = [names.index(n) for n in rest]
    result: dict[str, Any] = {
        "data": str(args.data),
        "every": args.every,
        "held_out_model": held,
        "test_questions": len(y_test),
        "pool_tolerance": tolerance,
        "full_retraining": {
            "auc": auc(full_p[:, j], y_test[:, j]),
            **_router_figures(full_p, y_test, c_test, tolerance),
        },
        "without_the_model": _router_figures(
            base_p_test, y_test[:, rest_idx], c_test[:, rest_idx], tolerance
        ),
        "runs": [],
    }
    _log(f"full retraining: {result['full_retraining']}")

    column = train_rows.models.index(held_label)
    candidates = np.nonzero(~np.isnan(train_rows.labels[:, column]))[0]
    x_tr = lookup([train_rows.questions[i] for i in candidates])
    y_tr = train_rows.labels[candidates, column].astype(np.float64)
    # the base head's scores on its own training questions are in-sample: use its out-of-fold scores there
    _log("out-of-fold scores of the base head on its training questions (a refit, cached)")
    sample = train_rows.subset(candidates)
    p_tr, _ = honest_base_p(base, sample, OnnxHead(base.head_path).predict(x_tr), data, embed=lookup)
    p_tr = p_tr[:, base_cols]
    pool_labels_tr = train_rows.labels[candidates][:, [train_rows.models.index(labels_of[n]) for n in rest]]
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = [int(d) for d in args.pca_dims.split(",")]
    for size in [*sizes, len(candidates)]:
        for strategy in ("random", "suggested"):
            if size == len(candidates) and strategy == "suggested":
                continue
            for seed in range(args.seeds if size < len(candidates) else 1):
                if strategy == "random":
                    picked = np.random.default_rng(seed).choice(len(candidates), size, replace=False)
                else:
                    picked = suggest(x_tr, pool_labels_tr, size, seed)
                for dims in variants:
                    settings = OnboardSettings(pca_dims=dims, seed=seed)
                    part, oof = fit_new_model(x_tr[picked], p_tr[picked], y_tr[picked], settings)
                    new = part.predict(x_test, base_p_test)
                    p = assemble(new)
                    run = {
                        "labels": size,
                        "strategy": strategy if size < len(candidates) else "all",
                        "seed": seed,
                        "pca_dims": dims,
                        "cv_auc": auc(oof, y_tr[picked]),
                        "auc": auc(new, y_test[:, j]),
                        "mean_p_minus_accuracy": float(new.mean() - y_test[:, j].mean()),
                        **_router_figures(p, y_test, c_test, tolerance),
                    }
                    result["runs"].append(run)
                    _log(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in run.items()}))
    result["summary"] = _summary(result)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    if args.plot:
        _plot(result, args.plot)


def _summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    groups: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for run in result["runs"]:
        groups.setdefault((run["labels"], run["strategy"], run["pca_dims"]), []).append(run)
    full = result["full_retraining"]
    rows = []
    for (labels, strategy, dims), runs in sorted(groups.items()):
        aucs = np.array([r["auc"] for r in runs])
        arena = np.array([r["arena_at_pool_tolerance"] for r in runs])
        rows.append(
            {
                "labels": labels,
                "strategy": strategy,
                "pca_dims": dims,
                "seeds": len(runs),
                "auc_mean": float(aucs.mean()),
                "auc_sd": float(aucs.std()),
                "auc_gap_to_full": float(full["auc"] - aucs.mean()),
                "cv_auc_mean": float(np.mean([r["cv_auc"] for r in runs])),
                "arena_mean": float(arena.mean()),
                "arena_gap_to_full": float(full["arena_at_pool_tolerance"] - arena.mean()),
                "arena_best_gap_to_full": float(
                    full["arena_best"] - np.mean([r["arena_best"] for r in runs])
                ),
            }
        )
    return rows


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    full = result["full_retraining"]
    rows = [r for r in result["summary"] if r["strategy"] != "all"]
    for dims in sorted({r["pca_dims"] for r in rows}):
        for strategy, style in (("random", "o-"), ("suggested", "s--")):
            sel = sorted(
                (r for r in rows if r["strategy"] == strategy and r["pca_dims"] == dims),
                key=lambda r: r["labels"],
            )
            if not sel:
                continue
            label = f"{strategy}, {dims} PCs" if dims else f"{strategy}"
            xs = [r["labels"] for r in sel]
            axes[0].errorbar(
                xs,
                [r["auc_mean"] for r in sel],
                yerr=[r["auc_sd"] for r in sel],
                fmt=style,
                label=label,
                capsize=3,
            )
            axes[1].plot(xs, [r["arena_mean"] for r in sel], style, label=label)
    axes[0].axhline(full["auc"], color="k", lw=1, label="full retraining")
    axes[0].axhline(full["auc"] - 0.03, color="k", lw=0.8, ls=":", label="full - 0.03")
    axes[1].axhline(full["arena_at_pool_tolerance"], color="k", lw=1, label="full retraining")
    axes[1].axhline(full["arena_at_pool_tolerance"] - 0.01, color="k", lw=0.8, ls=":", label="full - 0.01")
    axes[1].axhline(
        result["without_the_model"]["arena_at_pool_tolerance"],
        color="r",
        lw=0.8,
        ls="-.",
        label="without the model",
    )
    for ax, title in zip(
        axes, ("held-out AUC of the onboarded model", "router arena score (pool tolerance)"), strict=True
    ):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([50, 100, 200, 400])
        ax.set_xticklabels(["50", "100", "200", "400"])
        ax.set_xlabel("labels for the new model")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle(f"Onboarding {result['held_out_model']} ({result['test_questions']} held-out questions)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
