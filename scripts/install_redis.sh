#!/usr/bin/env bash
# Install Debian's redis-server for the shared-state tests (tests/test_gateway_redis.py start it on loopback).
#
# Usage: scripts/install_redis.sh   (as root, or with sudo available)
# Idempotent: does nothing when redis-server is on the PATH; runs `apt-get update` only when the package
# lists do not know redis-server yet. Prints the server's version on its last line.
set -euo pipefail

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  SUDO=(sudo)
fi

if ! command -v redis-server >/dev/null 2>&1; then
  if ! apt-cache show redis-server >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
redis-server --version
