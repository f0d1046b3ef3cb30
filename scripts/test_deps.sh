#!/usr/bin/env bash
# What the test suite needs beyond `scripts/setup.sh`: the second encoder and the real servers tests start.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ladder setup --encoder all-minilm-l6-v2
for script in scripts/install_triton.sh scripts/install_llama_cpp.sh scripts/install_chromium.sh scripts/install_helm.sh \
  scripts/install_redis.sh scripts/install_bubblewrap.sh scripts/install_agent_clis.sh; do
  if [ -f "$script" ]; then bash "$script"; fi
done
