#!/usr/bin/env bash
# Installs every Debian package Palisade needs to build and to run its host-tier tests.
# Idempotent; safe to run as often as you like. Needs root (apt-get).
set -euo pipefail

PKGS=(
  clang-19 llvm-19       # BPF programs in bpf/ are C, built by noded/build.rs
  libbpf-dev             # bpf_helpers.h and friends
  linux-libc-dev         # linux/bpf.h, if_ether.h, ...
  bpftool                # inspecting what the daemon attached
  iproute2               # ip netns / veth for the lab and the tests
  iputils-ping           # traffic in the tests and the demo
  nftables               # baseline for firewall benchmarks
  netsniff-ng            # trafgen: fixed-rate traffic for bench/net/veth_cpu.sh
  python3                # workloads of the seccomp/scheduler tests, traffic of the network tests
  runc                   # OCI consumer of exported seccomp profiles (tests)
  binutils               # objdump, strip: scripts/package.sh (dpkg-deb comes with dpkg)
  protobuf-compiler libprotobuf-dev   # protoc + well-known protos: etcd-client (feature etcd)
  etcd-server etcd-client             # the etcd store's tests run a real 3-member cluster
  ca-certificates
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo ">> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: the machine's toolchain (rustup). Nothing else is fetched.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

# Kernel filesystems the daemon and the tests use.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
echo ">> dependencies ready"
