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

# Debian 12's qemu-user-static (7.2) crashes in ONNX Runtime's arm64 start-up ("uncaught target signal 11");
# Debian 13's qemu 10 runs it. Where the registered aarch64 interpreter is older than 8, take qemu-aarch64 from
# Debian 13's qemu-user package (a static binary) and register it with the F flag (works inside containers).
newer_qemu() {
  local interp version deb dir=/usr/local/lib/ladder-qemu
  interp="$(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null || true)"
  version="$( (${interp:-false} --version 2>/dev/null || true) | grep -o -E 'version [0-9]+' | grep -o -E '[0-9]+' || echo 0)"
  if [[ -x "$dir/qemu-aarch64" && "$interp" == "$dir/qemu-aarch64" ]] || (( version >= 8 )); then
    return
  fi
  deb="$(mktemp -d /var/tmp/ladder-qemu.XXXXXX)"
  (cd "$deb" && apt-get download -o APT::Default-Release=trixie qemu-user/trixie >/dev/null 2>&1) || {
    local pool="${mirror%/}/pool/main/q/qemu"
    local file
    file="$(curl -fsSL "${mirror%/}/dists/trixie/main/binary-amd64/Packages.xz" | xz -dc \
      | awk '/^Package: qemu-user$/{p=1} p&&/^Filename:/{print $2; exit}')"
    curl -fsSL -o "$deb/qemu-user.deb" "${mirror%/}/$file"
  }
  dpkg-deb -x "$deb"/*.deb "$deb/x"
  "${SUDO[@]}" install -D -m 0755 "$deb/x/usr/bin/qemu-aarch64" "$dir/qemu-aarch64"
  rm -rf "$deb"
  if [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    echo -1 | "${SUDO[@]}" tee /proc/sys/fs/binfmt_misc/qemu-aarch64 >/dev/null
  fi
  printf '%s' ':qemu-aarch64:M:0:\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$dir/qemu-aarch64"':F' \
    | "${SUDO[@]}" tee /proc/sys/fs/binfmt_misc/register >/dev/null
}

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
for arch in "${ARCHES[@]}"; do
  if [[ "$arch" == arm64 && "$(dpkg --print-architecture)" != arm64 ]]; then
    newer_qemu
  fi
done
echo "${bases[*]}"
