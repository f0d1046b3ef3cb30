#!/usr/bin/env bash
# Install the real agent CLIs the client tests drive (Claude Code, Codex) into .tools/agent-clis (git-ignored).
#
# Usage: scripts/install_agent_clis.sh
# Idempotent: does nothing when the pinned versions are already installed. Needs node >= 18 and npm (Debian's
# nodejs and npm packages are installed when missing). Prints each CLI's version on the last lines.
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION=2.1.332
CODEX_VERSION=0.171.0
PREFIX=.tools/agent-clis

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  SUDO=(sudo)
fi

if ! command -v npm >/dev/null 2>&1; then
  if ! apt-cache show npm >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

installed() {  # package name, version: true when that version is in the prefix
  local manifest="$PREFIX/node_modules/$1/package.json"
  [[ -f "$manifest" ]] && grep -q "\"version\": \"$2\"" "$manifest"
}

if ! installed @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION" || ! installed @openai/codex "$CODEX_VERSION"; then
  mkdir -p "$PREFIX"
  npm install --prefix "$PREFIX" --no-audit --no-fund --no-save --loglevel=error \
    "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION"
fi
echo "claude $("$PREFIX/node_modules/.bin/claude" --version)"
echo "codex $("$PREFIX/node_modules/.bin/codex" --version)"
