#!/usr/bin/env bash
# Push Ladder's built manifest lists (localhost/ladder-<image>:TAG, from scripts/build_images.sh) to a registry
# and record the registry's digest of each list: the value for the Helm chart's `digest`.
#
# Usage: PUSH=registry/prefix [IMAGES="gateway export triton-cpu"] [TAG=0.1.0] [PUSH_TLS_VERIFY=false] \
#          scripts/push_images.sh        (or `make push ...`; `make images PUSH=...` calls it after building)
# - Credentials: podman's (`podman login registry`).
# - PUSH_TLS_VERIFY=false: plain HTTP / unverified TLS, for a registry on loopback (scripts/local_registry.sh);
#   anything else verifies TLS.
# Writes IMAGES_OUT/<image>.digest (default /var/tmp/ladder-images) and prints `pushed NAME:TAG@DIGEST`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PUSH:-}" ]]; then
  echo "PUSH=registry/prefix is required" >&2
  exit 2
fi
read -r -a images <<<"${IMAGES:-gateway export triton-cpu}"
tag="${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}"
out="${IMAGES_OUT:-/var/tmp/ladder-images}"
mkdir -p "$out"
tls=(--tls-verify=true)
if [[ "${PUSH_TLS_VERIFY:-true}" == false ]]; then
  tls=(--tls-verify=false)
fi

for image in "${images[@]}"; do
  name="localhost/ladder-$image:$tag"
  target="${PUSH%/}/ladder-$image:$tag"
  # layers are compressed on push, so the registry's digest differs from the local one
  podman manifest push --all --quiet "${tls[@]}" --digestfile "$out/$image.digest" "$name" "docker://$target"
  echo "pushed $target@$(cat "$out/$image.digest")"
done
