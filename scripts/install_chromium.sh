#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the playground test (tests/test_playground.py).
#
# Usage: scripts/install_chromium.sh   (as root, or with sudo available)
# Idempotent: does nothing when /usr/bin/chromium exists; runs `apt-get update` only when the package lists
# do not know the chromium package yet. Prints the browser's version on its last line.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  SUDO=(sudo)
fi

if [[ ! -x "$CHROMIUM" ]]; then
  if ! apt-cache show chromium >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null
fi
"$CHROMIUM" --version
