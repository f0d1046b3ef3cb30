#!/usr/bin/env bash
# Install Debian's PostgreSQL server for the shared-database tests (tests/postgres_support.py starts a
# throwaway cluster on loopback, as the package's `postgres` user, and removes it afterwards).
#
# Usage: scripts/install_postgres.sh   (as root, or with sudo available)
# Idempotent: does nothing when a server's initdb is installed; runs `apt-get update` only when the package
# lists do not know postgresql yet. The package's own cluster is not used by the tests. Prints the server's
# version on its last line.
set -euo pipefail

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  SUDO=(sudo)
fi

find_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [[ -z "$(find_bindir)" || ! -x "$(find_bindir)/initdb" ]]; then
  if ! apt-cache show postgresql >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
"$(find_bindir)/postgres" --version
