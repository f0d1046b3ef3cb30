#!/usr/bin/env bash
# Install Debian's bubblewrap, the jail `ladder judge` runs answer code in (tests/test_judge_sandbox.py attack it),
# and Debian's python3 where there is none: run as root, the jail starts as uid 65534 and needs an interpreter
# that user can read (one under /root cannot be).
#
# Usage: scripts/install_bubblewrap.sh   (as root, or with sudo available)
# Idempotent: does nothing when both are there; runs `apt-get update` only when the package lists do
# not know them yet. Prints bwrap's version on its last line. Whether the kernel lets bwrap create
# its namespaces is checked by Ladder itself, by trying once.
set -euo pipefail

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  SUDO=(sudo)
fi

PACKAGES=()
command -v bwrap >/dev/null 2>&1 || PACKAGES+=(bubblewrap)
[[ -x /usr/bin/python3 ]] || PACKAGES+=(python3)
if (( ${#PACKAGES[@]} )); then
  if ! apt-cache show "${PACKAGES[@]}" >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi
bwrap --version
