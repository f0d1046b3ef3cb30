#!/usr/bin/env bash
# Rebuild the shipped default router from ../shared/data/mmlu_pro: import with an 80/20 split by question id,
# train for the default pool, and evaluate on the held-out 20% (report.json and curve.png beside the checkpoint).
# The default router is package data (ladder/defaults), so that an installed wheel carries it.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${LADDER_SHARED_DATA:-../shared/data}
ladder=.venv/bin/ladder
mkdir -p runs
$ladder import mmlu-pro "$data/mmlu_pro" --out runs/mmlu_pro.csv.gz --test-fraction 0.2 --seed 0
defaults=ladder/defaults
$ladder train --data runs/mmlu_pro.csv.gz --pool $defaults/pool.yaml --out $defaults/checkpoint --seed 0 --force
$ladder evaluate --checkpoint $defaults/checkpoint --data runs/mmlu_pro.csv.gz --pool $defaults/pool.yaml \
  --json $defaults/checkpoint/report.json --plot $defaults/checkpoint/curve.png \
  --strong gemini-1.5-pro --weak gemini-1.5-flash --force
