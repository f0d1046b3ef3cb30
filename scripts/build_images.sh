#!/usr/bin/env bash
# Build Ladder's images with buildah (no Docker engine, no registry needed): gateway and export for each
# architecture, the CPU Triton image for amd64; each name a manifest list over its architectures.
#
# Usage: make images [ARCHES="amd64 arm64"] [IMAGES="gateway export triton-cpu"] [TAG=0.1.0] [ENCODER_FP32=1]
#                    [BASE=python:3.11-slim-bookworm] [PUSH=registry/prefix [PUSH_TLS_VERIFY=false]]
# - BASE: a Debian bookworm image for the targets; default localhost/debian:bookworm-<arch> when that exists
#   (scripts/install_images.sh debootstraps it), else python:3.11-slim-bookworm. Stages that only produce
#   architecture-independent files (the wheel, ONNX graphs) run on this machine's architecture.
# - TORCH_INDEX: where CPU PyTorch comes from; default PyTorch's CPU index when it answers, else pip's own
#   configuration (e.g. a local wheel folder).
# - The machine's pip configuration (its CA bundle, a find-links folder) is mounted read-only for the build
#   and referenced from a pip.conf that exists only during RUN steps: none of it is written into an image.
# - PUSH=ghcr.io/ladder-router: push each manifest list as PUSH/ladder-<image>:TAG (podman's credentials) and
#   record the registry's digest (scripts/push_images.sh). PUSH_TLS_VERIFY=false for a plain-HTTP registry on
#   loopback (scripts/local_registry.sh); TLS is verified otherwise.
# Names: localhost/ladder-<image>:TAG-<arch> per architecture, localhost/ladder-<image>:TAG for the list.
# Prints one line per image with its build time; `images.json` under IMAGES_OUT (default /var/tmp) has them.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a arches <<<"${ARCHES:-amd64 arm64}"
read -r -a images <<<"${IMAGES:-gateway export triton-cpu}"
tag="${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}"
host_arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
out="${IMAGES_OUT:-/var/tmp/ladder-images}"
mkdir -p "$out"

base_for() {  # the base image of one architecture
  if [[ -n "${BASE:-}" ]]; then
    echo "$BASE"
  elif podman image exists "localhost/debian:bookworm-$1" 2>/dev/null; then
    echo "localhost/debian:bookworm-$1"
  else
    echo "python:3.11-slim-bookworm"
  fi
}

if [[ -z "${TORCH_INDEX+set}" ]]; then
  TORCH_INDEX=https://download.pytorch.org/whl/cpu
  if ! curl -fsS --max-time 10 -o /dev/null "$TORCH_INDEX/torch/" 2>/dev/null; then
    echo "==> $TORCH_INDEX does not answer: CPU torch from pip's configuration" >&2
    TORCH_INDEX=""
  fi
fi

# pip's configuration for the build only: mounted at /etc/pip.conf with what it points to beside it.
volumes=()
conf="$(mktemp -d)"
trap 'rm -rf "$conf"' EXIT
{
  echo "[global]"
  cert="$(pip config get global.cert 2>/dev/null || true)"
  cert="${PIP_CERT:-$cert}"
  if [[ -n "$cert" && -f "$cert" ]]; then
    volumes+=(-v "$cert:/run/ladder-build/ca.crt:ro")
    echo "cert = /run/ladder-build/ca.crt"
  fi
  links="$(pip config get global.find-links 2>/dev/null || true)"
  links="${PIP_FIND_LINKS:-$links}"
  if [[ -n "$links" && -d "$links" ]]; then
    volumes+=(-v "$links:/run/ladder-build/wheels:ro")
    echo "find-links = /run/ladder-build/wheels"
  fi
} >"$conf/pip.conf"
volumes+=(-v "$conf/pip.conf:/etc/pip.conf:ro")

summary="$out/images.json"
echo "[" >"$summary"
first=1
for image in "${images[@]}"; do
  name="localhost/ladder-$image:$tag"
  built=()
  for arch in "${arches[@]}"; do
    if [[ "$image" == triton-cpu && "$arch" != amd64 ]]; then
      continue  # pytriton's tritonserver ships for x86_64 only
    fi
    start=$(date +%s)
    # The build stage runs on this machine's architecture (its outputs are architecture-independent) and is
    # handed in as BUILT: buildah 1.28 resolves neither $BUILDPLATFORM nor a stage named through an ARG.
    buildah bud --isolation chroot --layers --arch "$host_arch" --ignorefile deploy/gateway.Dockerfile.dockerignore \
      --build-arg "BUILD_BASE=$(base_for "$host_arch")" --build-arg "TORCH_INDEX=$TORCH_INDEX" --build-arg "ENCODER_FP32=${ENCODER_FP32:-0}" "${volumes[@]}" \
      --target build -t "localhost/ladder-build:$tag-$host_arch" -f deploy/gateway.Dockerfile . \
      >"$out/build-build-$host_arch.log" 2>&1 \
      || { echo "build stage failed: see $out/build-build-$host_arch.log" >&2; exit 1; }
    built_image="localhost/ladder-build:$tag-$host_arch"
    if [[ "$arch" != "$host_arch" ]]; then
      # a copy labelled with the target architecture
      ctr=$(buildah from --pull=never --quiet "$built_image")
      buildah config --arch "$arch" "$ctr"
      buildah commit --quiet --rm "$ctr" "localhost/ladder-build:$tag-for-$arch" >/dev/null
      built_image="localhost/ladder-build:$tag-for-$arch"
    fi
    cross=(--build-arg "BUILT=$built_image")
    buildah bud --isolation chroot --layers --arch "$arch" "${cross[@]}" --ignorefile deploy/gateway.Dockerfile.dockerignore \
      --build-arg "BASE=$(base_for "$arch")" --build-arg "BUILD_BASE=$(base_for "$host_arch")" \
      --build-arg "TORCH_INDEX=$TORCH_INDEX" --build-arg "ENCODER_FP32=${ENCODER_FP32:-0}" "${volumes[@]}" \
      --target "$image" -t "$name-$arch" -f deploy/gateway.Dockerfile . >"$out/build-$image-$arch.log" 2>&1 \
      || { echo "build of $name-$arch failed: see $out/build-$image-$arch.log" >&2; exit 1; }
    # buildah leaves the bind mounts' targets behind as empty files: drop them (a layer of whiteouts)
    ctr=$(buildah from --pull=never --quiet "$name-$arch")
    mnt=$(buildah mount "$ctr")
    rm -rf "$mnt/run/ladder-build"
    if [[ -f "$mnt/etc/pip.conf" && ! -s "$mnt/etc/pip.conf" ]]; then rm -f "$mnt/etc/pip.conf"; fi
    buildah umount "$ctr" >/dev/null
    buildah commit --quiet --rm "$ctr" "$name-$arch" >/dev/null
    seconds=$(( $(date +%s) - start ))
    size=$(podman image inspect --format '{{.Size}}' "$name-$arch")
    digest=$(podman image inspect --format '{{.Digest}}' "$name-$arch")
    echo "$name-$arch  built in ${seconds}s  $(( size / 1000000 )) MB  $digest"
    [[ $first == 1 ]] || echo "," >>"$summary"
    first=0
    printf '  {"image": "%s", "arch": "%s", "build_s": %d, "size_bytes": %d, "digest": "%s"}' \
      "$name-$arch" "$arch" "$seconds" "$size" "$digest" >>"$summary"
    built+=("$name-$arch")
  done
  if podman manifest exists "$name" 2>/dev/null; then
    podman manifest rm "$name" >/dev/null
  fi
  podman manifest create "$name" >/dev/null
  for one in "${built[@]}"; do
    podman manifest add "$name" "containers-storage:$one" >/dev/null
  done
  if [[ -n "${PUSH:-}" ]]; then
    # the registry's digest of the list (layers are compressed on push): what the chart's `digest` takes
    IMAGES="$image" TAG="$tag" IMAGES_OUT="$out" bash scripts/push_images.sh
  fi
done
printf '\n]\n' >>"$summary"
