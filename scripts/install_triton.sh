#!/usr/bin/env bash
# Install a real Triton Inference Server (CPU, python backend) into .venv-triton and prepare its server dir.
#
# Usage: scripts/install_triton.sh [VENV_DIR]   (default: .venv-triton at the repository root)
# Idempotent: re-running only fills in what is missing. Prints the server dir on its last line.
# See ../shared/notes/offline-stack.md (Triton): pytriton ships tritonserver 2.51.0 with only the python backend.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-triton}"
PYTHON="${PYTHON:-python3.11}"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import pytriton, onnxruntime, tokenizers, numpy" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "nvidia-pytriton==0.7.0" "numpy<2" "onnxruntime>=1.18" "tokenizers>=0.19"
fi

SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
SERVER="$VENV/tritonserver"
if [[ ! -x "$SERVER/bin/tritonserver" || ! -x "$SERVER/backends/python/triton_python_backend_stub" ]]; then
  rm -rf "$SERVER.tmp"
  cp -r "$SITE/pytriton/tritonserver" "$SERVER.tmp"
  cp "$SITE/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub" \
    "$SERVER.tmp/backends/python/triton_python_backend_stub"
  chmod +x "$SERVER.tmp/bin/tritonserver" "$SERVER.tmp/backends/python/triton_python_backend_stub"
  rm -rf "$SERVER"
  mv "$SERVER.tmp" "$SERVER"
fi
"$SERVER/bin/tritonserver" --help >/dev/null 2>&1 || true
echo "$SERVER"
