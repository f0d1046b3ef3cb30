#!/usr/bin/env bash
# Install Debian's bubblewrap, the jail `ladder judge` runs answer code in (tests/test_judge_sandbox.py attack it).
#
# Usage: scripts/install_bubblewrap.sh   (as root, or with sudo available)
# Idempotent: does nothing when bwrap is on the PATH; runs `apt-get update` only when the package lists do
# not know bubblewrap yet. Prints bwrap's version on its last line. Whether the kernel lets bwrap create
# its namespaces is checked by Ladder itself, by trying once.
set -euo pipefail

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  SUDO=(sudo)
fi

if ! command -v bwrap >/dev/null 2>&1; then
  if ! apt-cache show bubblewrap >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends bubblewrap >/dev/null
fi
bwrap --version
