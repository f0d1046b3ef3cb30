#!/usr/bin/env bash
# Install perf_analyzer (from tritonclient==2.51.0) into its own venv, .venv-perf (it pins an old tritonclient).
#
# Usage: scripts/install_perf_analyzer.sh [VENV_DIR]   Idempotent; prints the perf_analyzer path on its last line.
# Needs: apt's libb64-0d (installed when missing and we may), and the CUDA runtime wheel for libcudart.
# See ../shared/notes/offline-stack.md (perf_analyzer): the 2.60 wheel needs a newer glibc than Debian 12.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-perf}"
PYTHON="${PYTHON:-python3.11}"

if ! /sbin/ldconfig -p 2>/dev/null | grep -q libb64.so.0d; then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get install -y -q libb64-0d >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q libb64-0d >/dev/null; }
  else
    echo "perf_analyzer needs libb64-0d: sudo apt-get install libb64-0d" >&2
    exit 1
  fi
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -x "$VENV/bin/perf_analyzer" ]]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "tritonclient[all]==2.51.0" nvidia-cuda-runtime-cu12
fi
CUDART="$("$VENV/bin/python" -c 'import nvidia.cuda_runtime, os; print(os.path.join(nvidia.cuda_runtime.__path__[0], "lib"))')"
LD_LIBRARY_PATH="$CUDART${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$VENV/bin/perf_analyzer" --version >/dev/null 2>&1 || {
  echo "perf_analyzer does not start (LD_LIBRARY_PATH=$CUDART)" >&2
  exit 1
}
echo "$VENV/bin/perf_analyzer"
