#!/usr/bin/env python3
"""The gateway's cascade mode on two real local models (llama.cpp: SmolLM2-135M first, Gemma 3 270M above it),
whose token logprobs are real. Prints JSON.

Multiple-choice questions from LLMRouter's data are split in two halves. On the first half every question goes
to both models (pinned, with logprobs): that picks the mean-logprob threshold with the best accuracy (ties:
the cheaper one). On the second half the real openai client asks the gateway in cascade mode
(``ladder-cascade``) with that threshold, and each model alone, so the cascade is measured on questions that
chose nothing.

The router in front is a stand-in (a prompt-independent prior, about P 0.50 / 0.62): this measures the answer
signal, not the prefill router, so ``router_accept_p`` is 1 (the router never vouches for an answer).

Usage: .venv/bin/python research/cascade_local.py [--per-task 20] [--max-tokens 12] [--threads 1]
Needs scripts/install_llama_cpp.sh (.venv-llama and both GGUF files in .ladder-models).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "research"))

from local_loop import CHAT_FORMATS, CHOICE_TASKS, LOCAL_MODELS, question_rows  # noqa: E402

from ladder.bench.llama_server import MODELS_DIR, llama_server  # noqa: E402
from ladder.bench.server_thread import ServerThread  # noqa: E402
from ladder.core.answers import choice_letter  # noqa: E402
from ladder.core.cascade import mean_logprob  # noqa: E402
from ladder.core.logprobs import token_logprobs  # noqa: E402
from ladder.core.pool import load_pool  # noqa: E402
from ladder.core.router import Router  # noqa: E402
from ladder.gateway.app import create_app  # noqa: E402
from ladder.gateway.settings import load_settings  # noqa: E402
from ladder.training.prior_checkpoint import make_checkpoint  # noqa: E402

CHEAP, STRONG = "smollm2-135m", "gemma3-270m"
BIASES = {CHEAP: 0.0, STRONG: 0.5}


def letter(answer: str | None) -> str | None:
    """The option letter the answer gives, read by the judge's own extractor ("I think…" is not choice I)."""
    return choice_letter(answer)


def pool_file(directory: Path, urls: dict[str, str], threshold: float) -> Path:
    models = []
    for name, url in urls.items():
        _, price_in, price_out = LOCAL_MODELS[name]
        models.append(
            {
                "name": name,
                "upstream": {"base_url": url, "model": name},
                "price": {"input_per_1m": price_in, "output_per_1m": price_out},
                "context_window": 2048,
                "locality": "on-prem",
            }
        )
    cascade = {"first": "cheapest", "router_accept_p": 1.0, "min_mean_logprob": threshold}
    routing = {"checkpoint": str(directory / "ckpt"), "tolerance": 0.5, "cascade": cascade}
    path = directory / f"pool-{threshold:.3f}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "routing": routing, "models": models}), encoding="utf-8")
    return path


def auc(scores: list[float], right: list[bool]) -> float | None:
    """P(a right answer's score > a wrong one's): how well the signal ranks answers."""
    pos = [s for s, r in zip(scores, right, strict=True) if r]
    neg = [s for s, r in zip(scores, right, strict=True) if not r]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def choose_threshold(rows: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
    """The mean-logprob threshold with the best accuracy on ``rows`` (ties: fewer escalations)."""
    best: tuple[float, float, float] | None = None
    candidates = sorted({r["cheap_logprob"] for r in rows if r["cheap_logprob"] is not None})
    for t in [-1e9, *candidates, 1.0]:
        escalate = [r["cheap_logprob"] is None or r["cheap_logprob"] < t for r in rows]
        acc = statistics.fmean(
            r["strong_right"] if e else r["cheap_right"] for r, e in zip(rows, escalate, strict=True)
        )
        share = statistics.fmean(escalate)
        if best is None or (acc, -share) > (best[1], -best[2]):
            best = (t, acc, share)
    assert best is not None
    return best[0], {"train_accuracy": best[1], "train_escalated": best[2]}


def progress(phase: str, done: int, total: int, started: float) -> None:
    """One line per question on stderr, with an ETA for the phase (local models on shared CPUs are slow)."""
    elapsed = time.monotonic() - started
    eta = elapsed / done * (total - done) if done else 0.0
    print(f"{phase}: {done}/{total} questions, ETA {eta:.0f}s", file=sys.stderr, flush=True)


def ask_pinned(
    client: openai.OpenAI, model: str, question: str, max_tokens: int
) -> tuple[str, float | None, float]:
    """The pinned model's answer, its mean token logprob and its cost."""
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
        logprobs=True,
        top_logprobs=1,  # llama.cpp's Python server returns no logprobs without it
    )
    choice = completion.choices[0]
    logprobs = choice.logprobs.model_dump() if choice.logprobs is not None else None
    cost = float((completion.model_extra or {})["ladder"]["cost_usd"])
    return choice.message.content or "", mean_logprob(token_logprobs(logprobs)), cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = [r for r in question_rows(args.per_task) if r["task"] in CHOICE_TASKS]
    train_q, test_q = rows[0::2], rows[1::2]
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        urls = {
            name: stack.enter_context(
                llama_server(
                    MODELS_DIR / LOCAL_MODELS[name][0], name, work / f"{name}.log", args.threads, CHAT_FORMATS.get(name)
                )
            )
            for name in (CHEAP, STRONG)
        }
        make_checkpoint(work / "ckpt", [CHEAP, STRONG], [BIASES[CHEAP], BIASES[STRONG]])
        router = Router.from_pool(load_pool(pool_file(work, urls, 0.0)))

        def gateway(threshold: float) -> tuple[openai.OpenAI, str]:
            pool = load_pool(pool_file(work, urls, threshold))
            served = Router(pool, router.checkpoint, router.tokenizer, router.scorer)
            settings = load_settings(
                None,
                pool=pool_file(work, urls, threshold),
                auth_disabled=True,
                deadline_s=900.0,  # small models on shared CPUs: minutes, not seconds
                attempt_timeout_s=600.0,
                first_byte_timeout_s=600.0,
            )
            server = stack.enter_context(ServerThread(create_app(settings, router=served)))
            return openai.OpenAI(base_url=f"{server.url}/v1", api_key="local", max_retries=0), server.url

        client, _ = gateway(0.0)
        started = time.monotonic()
        train_rows = []
        for i, q in enumerate(train_q):
            progress("choosing the threshold", i, len(train_q), started)
            cheap, cheap_lp, _ = ask_pinned(client, CHEAP, q["question"], args.max_tokens)
            strong, _, _ = ask_pinned(client, STRONG, q["question"], args.max_tokens)
            train_rows.append(
                {
                    "cheap_logprob": cheap_lp,
                    "cheap_right": letter(cheap) == q["reference"],
                    "strong_right": letter(strong) == q["reference"],
                }
            )
        threshold, chosen = choose_threshold(train_rows)
        cascading, _ = gateway(threshold)
        test_rows = []
        tested = time.monotonic()
        for i, q in enumerate(test_q):
            progress("held-out cascade", i, len(test_q), tested)
            cheap, cheap_lp, _ = ask_pinned(cascading, CHEAP, q["question"], args.max_tokens)
            strong, _, strong_cost = ask_pinned(cascading, STRONG, q["question"], args.max_tokens)
            raw = cascading.chat.completions.with_raw_response.create(
                model="ladder-cascade",
                messages=[{"role": "user", "content": q["question"]}],
                max_tokens=args.max_tokens,
                temperature=0,
            )
            answer = raw.parse()
            ladder = (answer.model_extra or {})["ladder"]
            test_rows.append(
                {
                    "cheap_logprob": cheap_lp,
                    "cheap_right": letter(cheap) == q["reference"],
                    "strong_right": letter(strong) == q["reference"],
                    "cascade_right": letter(answer.choices[0].message.content) == q["reference"],
                    "cascade_model": raw.headers["x-ladder-model"],
                    "cascade_cost": ladder["cost_usd"],
                    "strong_cost": strong_cost,
                    "stages": len(ladder["cascade"]["stages"]),
                }
            )
        elapsed = time.monotonic() - started
    scored = [r for r in test_rows if r["cheap_logprob"] is not None]
    result = {
        "models": {CHEAP: LOCAL_MODELS[CHEAP][0], STRONG: LOCAL_MODELS[STRONG][0]},
        "questions": {"train": len(train_rows), "test": len(test_rows), "tasks": list(CHOICE_TASKS)},
        "threshold_mean_logprob": threshold,
        **chosen,
        "test": {
            f"{CHEAP}_accuracy": statistics.fmean(r["cheap_right"] for r in test_rows),
            f"{STRONG}_accuracy": statistics.fmean(r["strong_right"] for r in test_rows),
            "oracle_accuracy": statistics.fmean(r["cheap_right"] or r["strong_right"] for r in test_rows),
            "cascade_accuracy": statistics.fmean(r["cascade_right"] for r in test_rows),
            "cascade_escalated": statistics.fmean(r["stages"] == 2 for r in test_rows),
            "cascade_mean_cost_usd": statistics.fmean(r["cascade_cost"] for r in test_rows),
            "cascade_cost_share_of_strong": sum(r["cascade_cost"] for r in test_rows)
            / max(sum(r["strong_cost"] for r in test_rows), 1e-12),
            "logprob_auc_for_cheap_right": auc(
                [r["cheap_logprob"] for r in scored], [r["cheap_right"] for r in scored]
            ),
            "cheap_answers_with_logprobs": len(scored),
        },
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
