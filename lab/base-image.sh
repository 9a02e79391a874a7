#!/usr/bin/env bash
# Makes the lab's base image offline: a minimal Debian 12 root made with debootstrap from the
# machine's own apt mirror, imported into Docker. Nothing is pulled from a registry.
#
#   lab/base-image.sh            print the image reference (palisade-lab-base:<hash>), making it if needed
#
# The image is keyed by a content hash of what goes into it (suite, package list, recipe
# version), so it is rebuilt only when that changes. The root file system is kept as a tarball in
# .cache/lab/ (PALISADE_CACHE overrides .cache), so `lab.sh down`, which removes the images it
# made, does not cost a new debootstrap: the next `up` imports the tarball (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

# What the lab's containers need: services for traffic to hit and the tools that send it
# (python3, iproute2, ping, curl), Prometheus, and systemd + man-db + bash-completion so that
# the packages' unit files, man pages and completions can be verified in a clean root; and
# Debian's etcd, the store the two control-plane replicas share.
PACKAGES=(
  ca-certificates iproute2 iputils-ping procps curl netcat-openbsd python3
  prometheus systemd man-db bash-completion etcd-server etcd-client
)
SUITE=bookworm
RECIPE=1   # bump when the way the root is made changes (not for comments)

hash=$(printf '%s\n' "${PACKAGES[@]}" "$SUITE" "$RECIPE" | sha256sum | cut -c1-16)
ref=palisade-lab-base:$hash
cache=${PALISADE_CACHE:-$PWD/.cache}/lab
tarball=$cache/base-$hash.tar

log() { echo ">> $*" >&2; }

if docker image inspect "$ref" >/dev/null 2>&1; then
  log "base image $ref already in Docker"
elif [ -s "$tarball" ]; then
  log "base image: importing cached root file system $tarball ($(du -h "$tarball" | cut -f1))"
  docker import --change 'CMD ["/bin/bash"]' "$tarball" "$ref" >/dev/null
else
  command -v debootstrap >/dev/null || { echo "debootstrap is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
  # The mirror this machine's apt already uses: read, never written into the repo.
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || { echo "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2; exit 1; }
  root=$(mktemp -d /tmp/palisade-lab-root.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  include=$(IFS=,; echo "${PACKAGES[*]}")
  log "base image: debootstrap $SUITE (minbase + ${#PACKAGES[@]} packages) into $root; takes a few minutes"
  # debootstrap prints a line per package and step; show the first line of each step.
  debootstrap --variant=minbase --include="$include" "$SUITE" "$root" "$mirror" 2>&1 \
    | awk '$1 == "I:" && $2 != last { print "   " substr($0, 4); last = $2; fflush() } $1 == "E:" || $1 == "W:" { print; fflush() }' >&2
  [ -x "$root/usr/bin/python3" ] && [ -x "$root/usr/bin/prometheus" ] \
    || { echo "debootstrap did not produce a complete root in $root" >&2; exit 1; }
  # Slim it: apt lists and caches are not needed in the image.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  mkdir -p "$cache"
  tar -C "$root" --numeric-owner -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  log "base image: root file system cached as $tarball ($(du -h "$tarball" | cut -f1))"
  docker import --change 'CMD ["/bin/bash"]' "$tarball" "$ref" >/dev/null
fi
docker tag "$ref" palisade-lab-base:latest
echo "$ref"
