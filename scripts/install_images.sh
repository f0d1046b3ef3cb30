#!/usr/bin/env bash
# Install what builds and runs Ladder's OCI images without a registry: buildah, podman (runc), debootstrap,
# qemu for arm64, and a Debian bookworm base imported as localhost/debian:bookworm-<arch>.
#
# Usage: scripts/install_images.sh [amd64] [arm64]   (default: amd64; as root, or with sudo available)
# Idempotent: installs only missing packages (`apt-get update` only when the lists lack them), debootstraps a
# base only when its image is missing. Prints the base images on its last line.
# See ../shared/notes/offline-stack.md ("Container images").
set -euo pipefail

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  SUDO=(sudo)
fi
ARCHES=("$@")
if [[ ${#ARCHES[@]} == 0 ]]; then
  ARCHES=(amd64)
fi

packages=(buildah podman runc debootstrap)
for arch in "${ARCHES[@]}"; do
  if [[ "$arch" != "$(dpkg --print-architecture)" ]]; then
    packages+=(qemu-user-static binfmt-support)
  fi
done
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian mirror this machine's apt uses (deb822 or one-line sources), so the base image reaches it too.
mirror="$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null \
  | grep -o -E 'https?://[^ ]+/debian/?( |$)' | head -n 1 | tr -d ' ' || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

bases=()
for arch in "${ARCHES[@]}"; do
  image="localhost/debian:bookworm-$arch"
  bases+=("$image")
  if "${SUDO[@]}" podman image exists "$image"; then
    continue
  fi
  if [[ "$arch" != "$(dpkg --print-architecture)" ]]; then
    if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
      "${SUDO[@]}" mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    "${SUDO[@]}" update-binfmts --enable "qemu-$(case $arch in arm64) echo aarch64 ;; *) echo "$arch" ;; esac)"
  fi
  root="$(mktemp -d /var/tmp/ladder-debootstrap.XXXXXX)"
  "${SUDO[@]}" debootstrap --variant=minbase --arch="$arch" bookworm "$root" "$mirror" >/dev/null
  "${SUDO[@]}" rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  "${SUDO[@]}" tar -C "$root" -c . | "${SUDO[@]}" podman import --quiet --arch "$arch" - "$image" >/dev/null
  "${SUDO[@]}" rm -rf "$root"
done
echo "${bases[*]}"
