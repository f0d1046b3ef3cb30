#!/usr/bin/env python3
"""The persona loop on two real local models: llama.cpp serves SmolLM2-135M and Gemma 3 270M on loopback; they
answer multiple-choice and short-answer questions from LLMRouter's data; the answers are judged against the
references; a router is trained and evaluated on what the models really got right.

Usage: .venv/bin/python research/local_loop.py [--per-task 50] [--work runs/local-loop] [--skip-train]
Needs scripts/install_llama_cpp.sh (llama.cpp in .venv-llama, both GGUF files in .ladder-models) and the
MiniLM encoder (`ladder setup --encoder all-minilm-l6-v2`). The store, logs and checkpoint stay in the work
folder; the summary, the evaluation report and its plot go to --report (reports/local-loop).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ladder.bench.llama_server import MODELS_DIR, llama_python, llama_server

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("LADDER_SHARED_DATA", ROOT.parent / "shared" / "data")) / "llmrouter"
# name -> (GGUF file, nominal $ per 1M input and output tokens: local models cost compute, priced by size)
LOCAL_MODELS = {
    "smollm2-135m": ("SmolLM2-135M-Instruct.Q4_1.gguf", 0.01, 0.02),
    "gemma3-270m": ("gemma-3-270m-q4_k_m.gguf", 0.02, 0.04),
}
# the Gemma GGUF (a base model) carries no chat template: name llama.cpp's Gemma turn format
CHAT_FORMATS = {"gemma3-270m": "gemma"}
CHOICE_TASKS = ("mmlu", "commonsense_qa", "openbook_qa", "arc_challenge")
SHORT_TASKS = ("trivia_qa", "natural_qa")
REPORTED = (
    "questions", "per_model", "oracle_accuracy", "best_single_model", "best_single_accuracy", "router",
    "headroom_captured", "cost_to_match_best_single", "baselines", "verdict",
)  # fmt: skip


def _choices(raw: str) -> tuple[list[str], list[str]]:
    value = ast.literal_eval(raw)
    if isinstance(value, dict):
        texts = list(value["text"])
        labels = list(value.get("label") or value.get("labels") or "ABCDEFGHIJ"[: len(texts)])
        return labels, texts
    return list("ABCDEFGHIJ"[: len(value)]), [str(v) for v in value]


def question_rows(per_task: int) -> list[dict[str, Any]]:
    """``per_task`` questions of each task, test split first, as `ladder collect` JSONL rows."""
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in (*CHOICE_TASKS, *SHORT_TASKS)}
    for split in ("test", "train"):
        with (DATA / f"default_query_{split}.jsonl").open(encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                record = json.loads(line)
                task = record["task_name"]
                if task not in rows or len(rows[task]) >= per_task:
                    continue
                query = record["query"].strip()
                if task in CHOICE_TASKS:
                    labels, texts = _choices(record["choices"])
                    options = "\n".join(f"{label}. {text}" for label, text in zip(labels, texts, strict=True))
                    question = f"{query}\n\n{options}\n\nAnswer with the letter of the correct option."
                else:
                    question = f"{query}\n\nAnswer in a few words."
                rows[task].append(
                    {
                        "id": f"{task}-{split}-{number}",
                        "question": question,
                        "reference": record["ground_truth"],
                        "task": task,
                    }
                )
    return [row for task_rows in rows.values() for row in task_rows]


def pool_yaml(urls: dict[str, str]) -> str:
    lines = ["version: 1", "routing:", "  checkpoint: ckpt", "models:"]
    for name, url in urls.items():
        _, price_in, price_out = LOCAL_MODELS[name]
        lines += [
            f"  - name: {name}",
            f"    upstream: {{base_url: {url}, model: {name}}}",
            f"    price: {{input_per_1m: {price_in}, output_per_1m: {price_out}}}",
            "    context_window: 2048",
            "    locality: on-prem",
        ]
    return "\n".join(lines) + "\n"


def ladder(*args: str) -> str:
    """Run the `ladder` CLI; its stdout. Progress and tables go to the terminal (stderr)."""
    print(f"$ ladder {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "ladder.cli", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ladder {args[0]} failed with exit status {done.returncode}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=50, help="questions per task (6 tasks)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "local-loop")
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "local-loop")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per llama.cpp server")
    parser.add_argument("--skip-train", action="store_true", help="collect and judge only")
    args = parser.parse_args()
    out: Path = args.work.resolve()
    report_dir: Path = args.report.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    for name, (gguf, _, _) in LOCAL_MODELS.items():
        if not (MODELS_DIR / gguf).is_file():
            raise SystemExit(f"{MODELS_DIR / gguf} is missing ({name}): run scripts/install_llama_cpp.sh")
    if not llama_python().is_file():
        raise SystemExit(f"{llama_python()} is missing: run scripts/install_llama_cpp.sh")
    questions = out / "questions.jsonl"
    questions.write_text(
        "".join(json.dumps(r) + "\n" for r in question_rows(args.per_task)), encoding="utf-8"
    )
    started = time.monotonic()
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(
                llama_server(MODELS_DIR / gguf, name, out / f"{name}.log", args.threads, CHAT_FORMATS.get(name))
            )
            for name, (gguf, _, _) in LOCAL_MODELS.items()
        }
        pool = out / "pool.yaml"
        pool.write_text(pool_yaml(urls), encoding="utf-8")
        common = ["--pool", str(pool), "--questions", str(questions), "--store", str(out / "answers.db")]
        limits = ["--max-tokens", str(args.max_tokens), "--concurrency", "1", "--timeout", "120"]
        estimate = json.loads(ladder("collect", *common, *limits, "--dry-run"))
        ladder("collect", *common, *limits, "--json", str(out / "collect.json"))
    collect_s = time.monotonic() - started
    labels = out / "labels.csv"
    ladder("judge", "--store", str(out / "answers.db"), "--judge", "reference", "--out", str(labels),
           "--test-fraction", "0.3", "--json", str(out / "judge.json"))  # fmt: skip
    summary: dict[str, Any] = {
        "questions": sum(1 for _ in questions.open(encoding="utf-8")),
        "collect_seconds": collect_s,
        "dry_run_estimate": estimate["total"],
        "collect": json.loads((out / "collect.json").read_text(encoding="utf-8")),
        "judge": json.loads((out / "judge.json").read_text(encoding="utf-8")),
    }
    if not args.skip_train:
        ckpt = out / "ckpt"
        ladder("train", "--data", str(labels), "--out", str(ckpt), "--encoder", "all-minilm-l6-v2",
               "--members", "3", "--pca-dims", "16")  # fmt: skip
        report_path = report_dir / "report.json"
        ladder("evaluate", "--checkpoint", str(ckpt), "--data", str(labels), "--json", str(report_path),
               "--plot", str(report_dir / "curve.png"))  # fmt: skip
        report = json.loads(report_path.read_text(encoding="utf-8"))
        summary["evaluate"] = {k: report.get(k) for k in REPORTED}
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
