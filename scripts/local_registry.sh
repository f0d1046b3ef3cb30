#!/usr/bin/env bash
# A real OCI registry on loopback (the CNCF distribution registry, Debian's `docker-registry`) for pushing
# Ladder's images where no public registry is reachable, and for the push-and-pull-by-digest test.
#
# Usage: scripts/local_registry.sh start|stop|status
#   REGISTRY_ADDR (default 127.0.0.1:5000), REGISTRY_DIR (default /var/tmp/ladder-registry: config, blobs, log)
# Plain HTTP on loopback only: push with `make images PUSH=localhost:5000/ladder-router PUSH_TLS_VERIFY=false`.
set -euo pipefail

addr="${REGISTRY_ADDR:-127.0.0.1:5000}"
dir="${REGISTRY_DIR:-/var/tmp/ladder-registry}"
pidfile="$dir/registry.pid"

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then
      echo "registry already running on $addr (pid $(cat "$pidfile"))"
      exit 0
    fi
    if ! command -v docker-registry >/dev/null; then
      echo "==> installing docker-registry (Debian's CNCF distribution registry)" >&2
      sudo_="$([[ $(id -u) == 0 ]] || echo sudo)"
      $sudo_ apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
    fi
    mkdir -p "$dir/storage"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $addr
EOF
    setsid docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 100); do
      if curl -fsS -o /dev/null "http://$addr/v2/"; then
        echo "registry on http://$addr (pid $(cat "$pidfile"), storage $dir/storage)"
        exit 0
      fi
      running || break
      sleep 0.1
    done
    echo "the registry did not answer on $addr: see $dir/registry.log" >&2
    exit 1
    ;;
  stop)
    if running; then
      kill "$(cat "$pidfile")"
      rm -f "$pidfile"
      echo "registry on $addr stopped"
    fi
    ;;
  status)
    if running; then
      echo "registry on http://$addr (pid $(cat "$pidfile"))"
    else
      echo "no registry running from $dir"
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
