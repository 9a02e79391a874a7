#!/usr/bin/env bash
# Installs what the VM test tier needs and caches Debian's backports cloud kernel
# (CONFIG_BPF_LSM=y) under .cache/vm/ (gitignored). Idempotent; needs root.
#
# qemu-system-x86 and the 6.12 kernel come from Debian's backports suite. The apt source
# for it is derived from the machine's own Debian source (its first stanza, with
# `Suites: bookworm-backports`), so no mirror is named here.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${PALISADE_VM_CACHE:-$PWD/.cache/vm}
mkdir -p "$CACHE"
export DEBIAN_FRONTEND=noninteractive

SRC=/etc/apt/sources.list.d/debian.sources
BPO=/etc/apt/sources.list.d/palisade-backports.sources
if [ ! -f "$BPO" ]; then
  [ -f "$SRC" ] || { echo "no $SRC to derive the backports source from" >&2; exit 1; }
  echo ">> adding the bookworm-backports apt source (derived from $SRC)"
  awk 'BEGIN{s=0} /^[[:space:]]*$/{ if (s) exit; next } { s=1; if ($1=="Suites:") print "Suites: bookworm-backports"; else print }' \
    "$SRC" >"$BPO.tmp"
  mv "$BPO.tmp" "$BPO"
  apt-get update -qq
fi

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod && ldd /bin/busybox 2>&1 | grep -q 'not a dynamic' \
  || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v strip >/dev/null || need+=(binutils)
command -v xz >/dev/null || need+=(xz-utils)
command -v gcc >/dev/null || need+=(gcc libc6-dev)   # the guest helper (scripts/vm/palvm-helper.c)
if [ ${#need[@]} -gt 0 ]; then
  echo ">> installing ${need[*]}"
  apt-get install -y -qq --no-install-recommends -t bookworm-backports "${need[@]}" >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends -t bookworm-backports "${need[@]}" >/dev/null; }
fi

# The kernel: newest 6.12 cloud image in backports, unpacked once.
if ! ls "$CACHE"/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
  pkg=$(apt-cache pkgnames linux-image-6.12 | grep -E '^linux-image-6\.12\.[0-9.+~a-z-]*-cloud-amd64-unsigned$' | sort -V | tail -1)
  [ -n "$pkg" ] || { apt-get update -qq; pkg=$(apt-cache pkgnames linux-image-6.12 | grep -E 'cloud-amd64-unsigned$' | sort -V | tail -1); }
  [ -n "$pkg" ] || { echo "no linux-image-6.12.*-cloud-amd64-unsigned package found in backports" >&2; exit 1; }
  echo ">> fetching $pkg"
  rm -rf "$CACHE/deb" "$CACHE/kernel"
  mkdir -p "$CACHE/deb"
  (cd "$CACHE/deb" && apt-get download -qq -o APT::Sandbox::User=root "$pkg")
  dpkg-deb -x "$CACHE"/deb/*.deb "$CACHE/kernel.tmp"
  mv "$CACHE/kernel.tmp" "$CACHE/kernel"
  rm -rf "$CACHE/deb"
fi
echo ">> VM tier ready: $(ls "$CACHE"/kernel/boot/vmlinuz-*)"
