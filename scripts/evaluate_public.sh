#!/usr/bin/env bash
# Train and evaluate Ladder on the public routing benchmarks in ../shared/data, the same protocol as the
# shipped default: train on the training split only, report on the held-out split beside every baseline.
# Writes reports/<benchmark>/{report.json,curve.png} (checkpoints stay git-ignored under reports/*/checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${LADDER_SHARED_DATA:-../shared/data}
ladder=.venv/bin/ladder
mkdir -p runs

run() {  # name, canonical file, pool (or ""), strong, weak
  local name=$1 file=$2 pool=$3 strong=$4 weak=$5 out=reports/$1
  mkdir -p "$out"
  local pool_args=()
  [ -n "$pool" ] && pool_args=(--pool "$pool")
  $ladder train --data "$file" "${pool_args[@]}" --out "$out/checkpoint" --force
  $ladder evaluate --checkpoint "$out/checkpoint" --data "$file" "${pool_args[@]}" \
    --json "$out/report.json" --plot "$out/curve.png" --strong "$strong" --weak "$weak" --force
}

# LLMRouter: its own train/test split and prices (costs from the data).
$ladder import llmrouter "$data/llmrouter" --out runs/llmrouter.csv.gz
run llmrouter runs/llmrouter.csv.gz "" llama-3.1-nemotron-51b-instruct gemma-2-9b-it

# RouteLLM's GPT-4 / Mixtral evaluations: 80/20 split by question id, contaminated prompts dropped.
for bench in mmlu gsm8k; do
  $ladder import "routellm-$bench" "$data/routellm" --out "runs/routellm-$bench.csv.gz" --test-fraction 0.2
  sed "s#reports/routellm-mmlu#reports/routellm-$bench#" pools/routellm.yaml > "runs/routellm-$bench.yaml"
  run "routellm-$bench" "runs/routellm-$bench.csv.gz" "runs/routellm-$bench.yaml" gpt-4-1106-preview mixtral-8x7b
done

# MMLU-Pro cascades (the data carries each model's answer letter), with a prefill estimate that needs no
# encoder: each model's per-subject accuracy on the training rows. `ladder evaluate` on the default router
# (scripts/build_default_router.sh) reports the same cascades with the router's own scores.
$ladder import mmlu-pro "$data/mmlu_pro" --out runs/mmlu_pro.csv.gz --test-fraction 0.2 --seed 0
mkdir -p reports/mmlu-pro
.venv/bin/python research/cascade_by_task.py runs/mmlu_pro.csv.gz ladder/defaults/pool.yaml \
  reports/mmlu-pro/cascade_by_task.json

# Cascades on real answer confidences (Zellinger & Thomson's Llama results, their train/test split): the
# prefill router and the calibrated cascade tuned on train, every plan measured on test beside 405B, the
# authors' Markov-copula tuning (Zellinger & Thomson) and grid-searched chains (docs/confidence-cascades.md).
$ladder import cascades-llama "$data/cascades_llama" --out runs/cascades_llama.csv.gz
$ladder evaluate-confidence --data runs/cascades_llama.csv.gz --out reports/cascades-llama --prompts words
